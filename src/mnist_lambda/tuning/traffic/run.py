"""``what_if``: each rate's trace through the local stack, with N environments.

For each rate the stack is redeployed (fresh environments, so the rate's cold starts are its
own) with the template's ``ReservedConcurrency`` set to N (and ``MemorySize``, the stage's
``ThrottleRateLimit``/``ThrottleBurstLimit`` if asked); with reserved concurrency the local
Lambda runs exactly N environments and throttles a request arriving when all N are busy, which
API Gateway returns as a 500 (header ``X-Lambda-Emulator-Throttled: true``). Then the rate's
trace (:mod:`.arrivals`) is sent (:mod:`.trace`) and summarized (:mod:`.summary`).

N defaults to what the template reserves; the template's default is 0 (unreserved: on AWS the
function then scales up to the account's concurrency), which cannot be emulated, so N is then
:data:`LOCAL_DEFAULT_ENVIRONMENTS` and the result says so (``environments_source``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_lambda import local_stack, pricing
from mnist_lambda.aws_limits import check_memory_size
from mnist_lambda.template import MEMORY_PARAMETER, template_path
from mnist_lambda.template.reader import function_settings, load_template
from mnist_lambda.tuning.traffic.arrivals import arrival_times, check_bounds
from mnist_lambda.tuning.traffic.summary import summarize
from mnist_lambda.tuning.traffic.trace import run_trace

MAX_ENVIRONMENTS = 32
"""Environments (RIE processes) one local what-if may run at once."""
LOCAL_DEFAULT_ENVIRONMENTS = 4
"""N when the template reserves no concurrency (ReservedConcurrency 0 = unreserved)."""
RESERVED_PARAMETER = "ReservedConcurrency"
THROTTLE_RATE_PARAMETER, THROTTLE_BURST_PARAMETER = "ThrottleRateLimit", "ThrottleBurstLimit"


def what_if(
    *,
    state_dir: Path,
    info: local_stack.StackInfo,
    bucket: str,
    key: str,
    rates: Sequence[float],
    duration_s: float,
    environments: int | None = None,
    seed: int = 0,
    memory_mb: int | None = None,
    throttle: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """Run each rate's seeded Poisson trace of ``POST /predict {bucket, key}`` through the
    stack in ``state_dir`` with N environments (reserved concurrency N); return the numbers.

    The stack's parameters and instance count are set back to what they were at the end (a
    last redeploy: fresh environments)."""
    rates = [float(r) for r in rates]
    _check_request(rates, duration_s, environments, memory_mb, throttle)
    info = local_stack.read(state_dir) or info
    plan = _plan(info, environments, memory_mb, throttle)
    body = {"bucket": bucket, "key": key}
    deployed_mb = plan.memory_mb
    results: list[dict[str, Any]] = []
    try:
        for rate in rates:
            current = _redeploy(state_dir, plan)
            deployed_mb = current.memory_mb or deployed_mb
            arrivals = arrival_times(rate, duration_s, seed)
            auth = local_stack.endpoint_auth(current)
            calls = run_trace(current.predict_url, body, arrivals, auth=auth)
            results.append(
                summarize(
                    calls,
                    rate=rate,
                    duration_s=duration_s,
                    memory_mb=deployed_mb,
                    environments=plan.environments,
                    stage_throttle=plan.stage_throttle,
                    arch=plan.arch,
                )
            )
    finally:
        if local_stack.read(state_dir) is not None:
            local_stack.redeploy(state_dir, parameters=plan.restore, instances=info.instances)
    throttle_doc = None
    if plan.stage_throttle is not None:
        throttle_doc = {"rate": plan.stage_throttle[0], "burst": plan.stage_throttle[1]}
    return {
        "environments": plan.environments,
        "environments_source": plan.source,
        "duration_s": float(duration_s),
        "seed": seed,
        "memory_mb": deployed_mb,
        "arch": plan.arch,
        "stage_throttle": throttle_doc,
        "bucket": bucket,
        "key": key,
        "rates": results,
    }


def _check_request(
    rates: Sequence[float],
    duration_s: float,
    environments: int | None,
    memory_mb: int | None,
    throttle: tuple[float, int] | None,
) -> None:
    """Raise ValueError for what no stack should be asked (before touching one)."""
    check_bounds(rates, duration_s)
    if environments is not None and not 1 <= environments <= MAX_ENVIRONMENTS:
        raise ValueError(f"environments must be 1..{MAX_ENVIRONMENTS}, got {environments}")
    if memory_mb is not None:
        check_memory_size(memory_mb)
    if throttle is not None and not (throttle[0] >= 1 and int(throttle[1]) >= 1):
        raise ValueError(f"stage throttle (rate, burst) must be >= (1, 1), got {throttle}")


@dataclass(frozen=True)
class _Plan:
    """What every rate of one what-if runs with, and what the stack is set back to after."""

    environments: int
    source: str
    """Where ``environments`` came from, in words."""
    parameters: dict[str, str]
    restore: dict[str, str]
    memory_mb: int
    stage_throttle: tuple[float, int] | None
    arch: str


def _plan(
    info: local_stack.StackInfo,
    environments: int | None,
    memory_mb: int | None,
    throttle: tuple[float, int] | None,
) -> _Plan:
    """The stack's template and overrides with the what-if's parameters on top."""
    template = Path(info.raw.get("template") or template_path())
    overrides = {str(k): str(v) for k, v in (info.raw.get("parameters") or {}).items()}
    declared = load_template(template).get("Parameters") or {}
    needed = [RESERVED_PARAMETER, MEMORY_PARAMETER]
    if throttle is not None:
        needed += [THROTTLE_RATE_PARAMETER, THROTTLE_BURST_PARAMETER]
    if missing := [p for p in needed if p not in declared]:
        raise ValueError(f"{template} has no parameter {', '.join(missing)}")
    if environments is None:
        reserved = function_settings(template, overrides).function.reserved_concurrency
        environments, source = _default_environments(reserved or 0)
    else:
        source = "asked for"
    parameters = _parameters(environments, memory_mb, throttle)
    settings = function_settings(template, overrides | parameters)
    stage = settings.throttle
    arch = settings.function.architecture
    return _Plan(
        environments=environments,
        source=source,
        parameters=parameters,
        restore={k: _current(k, overrides, declared) for k in parameters},
        memory_mb=settings.function.memory_size,
        stage_throttle=None if stage is None else (stage.rate_limit, stage.burst_limit),
        arch=arch if arch in pricing.ARCHITECTURES else pricing.DEFAULT_ARCH,
    )


def _parameters(
    environments: int, memory_mb: int | None, throttle: tuple[float, int] | None
) -> dict[str, str]:
    """The template parameters the what-if deploys with."""
    parameters = {RESERVED_PARAMETER: str(environments)}
    if memory_mb is not None:
        parameters[MEMORY_PARAMETER] = str(memory_mb)
    if throttle is not None:
        parameters[THROTTLE_RATE_PARAMETER] = f"{float(throttle[0]):g}"
        parameters[THROTTLE_BURST_PARAMETER] = str(int(throttle[1]))
    return parameters


def _current(name: str, overrides: Mapping[str, str], declared: Mapping[str, Any]) -> str:
    """The value the stack runs ``name`` with: its override, else the template's default."""
    return overrides.get(name, str((declared.get(name) or {}).get("Default", "")))


def _default_environments(reserved: int) -> tuple[int, str]:
    """N when none is asked for, and why: the template's reserved concurrency, or the local
    default when it reserves none."""
    if reserved <= 0:
        return LOCAL_DEFAULT_ENVIRONMENTS, (
            "local default: the template reserves no concurrency (ReservedConcurrency 0 = "
            f"unreserved, AWS would scale up to the account's limit), so "
            f"{LOCAL_DEFAULT_ENVIRONMENTS} environments"
        )
    source = f"the stack's ReservedConcurrency ({reserved})"
    if reserved > MAX_ENVIRONMENTS:
        source += f", capped at the {MAX_ENVIRONMENTS} a local what-if runs"
    return min(reserved, MAX_ENVIRONMENTS), source


def _redeploy(state_dir: Path, plan: _Plan) -> local_stack.StackInfo:
    """The stack with the plan's parameters and N fresh environments (a stack started with
    none, S3 and the API only, gets them too)."""
    current = local_stack.redeploy(
        state_dir, parameters=plan.parameters, instances=plan.environments
    )
    deployed = next(iter((current.raw.get("functions") or {}).values()), {})
    running = int(deployed.get("environments", plan.environments))
    if running != plan.environments:
        raise RuntimeError(f"the stack runs {running} environments, not {plan.environments}")
    return current
