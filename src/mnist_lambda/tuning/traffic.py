"""The traffic what-if: a seeded Poisson arrival trace through the local stack, per rate.

``mnist-lambda tune --traffic 2,8 --duration 10`` calls :func:`what_if`, which for each rate

1. redeploys the stack (fresh environments, so the rate's cold starts are its own) with the
   template's ``ReservedConcurrency`` set to N environments (and ``MemorySize``, the stage's
   ``ThrottleRateLimit``/``ThrottleBurstLimit`` if asked); with reserved concurrency the local
   Lambda runs exactly N environments and throttles a request arriving when all N are busy,
   which API Gateway returns as a 500 (header ``X-Lambda-Emulator-Throttled: true``);
2. sends ``POST /predict`` open loop at the times of :func:`arrival_times` (a request leaves at
   its scheduled time whether or not the earlier ones have returned; one thread per request in
   flight, at most :data:`MAX_IN_FLIGHT`; how late a send was is measured and reported), with
   no retries (every 429 and 500 is counted as the client sees it);
3. :func:`summarize` turns the per-request :class:`Call` records into the rate's numbers.

N defaults to what the template reserves; the template's default is 0 (unreserved: on AWS the
function then scales up to the account's concurrency), which cannot be emulated, so N is then
:data:`LOCAL_DEFAULT_ENVIRONMENTS` and the result says so (``environments_source``).

Environments needed to hold a rate without Lambda throttling, both reported:

* ``peak_in_flight``: the largest number of requests in flight at once on the client's clock
  (send to answer), among the requests the stage admitted; a request Lambda throttled counts as
  if it had been served in the median served latency (what it would have occupied);
* ``littles_law``: ``ceil(rate x p99 warm function duration)`` (Little's law L = lambda W, with
  the p99 instead of the mean for headroom; cold durations only if no call was warm), >= 1.

Cost per hour at a rate is the steady state with every request served: ``rate x 3600``
requests, each billed the mean measured duration of the warm calls (rounded up to the ms; the
mean of all served calls if none was warm) at the configured memory, plus Lambda's and API
Gateway's per-request prices (:mod:`mnist_lambda.pricing`, the function's architecture). Over
an hour the few cold starts weigh little; their count and init time are reported apart (a cold
call's duration includes its init, which Lambda bills since August 2025).

Bounded: at most :data:`MAX_REQUESTS` expected requests (sum of rate x duration) and
:data:`MAX_TRAFFIC_S` seconds of traffic (rates x duration) per call; loopback only (the
stack's own URL).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_lambda import local_stack, pricing
from mnist_lambda.aws_limits import check_memory_size
from mnist_lambda.client import Client, EndpointError
from mnist_lambda.template import FUNCTION_ID, template_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_REQUESTS = 5000
"""Expected requests (sum over the rates of rate x duration) one what-if may send."""
MAX_TRAFFIC_S = 300.0
"""Seconds of traffic (number of rates x duration) one what-if may take."""
MAX_ENVIRONMENTS = 32
"""Environments (RIE processes) one local what-if may run at once."""
MAX_IN_FLIGHT = 64
"""Requests in flight at once (client threads); a send beyond it waits and is counted late."""
LATE_SEND_S = 0.05
"""A request sent more than this after its scheduled time is counted as a late send."""
LOCAL_DEFAULT_ENVIRONMENTS = 4
"""N when the template reserves no concurrency (ReservedConcurrency 0 = unreserved)."""
REQUEST_TIMEOUT_S = 35.0
"""Client timeout of one request (longer than API Gateway's 29 s integration timeout)."""


# --- the trace ----------------------------------------------------------------------------


def check_bounds(rates: Sequence[float], duration_s: float) -> None:
    """Raise ValueError unless every rate > 0, duration > 0 and the totals are within bounds."""
    if not rates:
        raise ValueError("no rate given")
    if any(not (math.isfinite(r) and r > 0) for r in rates):
        raise ValueError(f"rates must be positive requests/s, got {list(rates)}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration must be positive seconds, got {duration_s}")
    traffic_s = len(rates) * duration_s
    if traffic_s > MAX_TRAFFIC_S:
        raise ValueError(
            f"{len(rates)} rate(s) x {duration_s:g} s = {traffic_s:g} s of traffic, over the "
            f"{MAX_TRAFFIC_S:g} s a what-if may take: fewer rates or a shorter --duration"
        )
    expected = sum(rates) * duration_s
    if expected > MAX_REQUESTS:
        raise ValueError(
            f"{sum(rates):g} requests/s x {duration_s:g} s = {expected:,.0f} expected requests, "
            f"over the {MAX_REQUESTS:,} a what-if may send: lower rates or a shorter --duration"
        )


def arrival_times(rate: float, duration_s: float, seed: int = 0) -> np.ndarray:
    """Seconds from the start at which requests arrive: a Poisson process of ``rate`` per
    second on ``[0, duration_s)``, as cumulative exponential gaps (seeded, bounded).

    The unit-mean gaps depend on ``seed`` only and are divided by ``rate``: the same seed gives
    the same trace, and the trace at ``2 * rate`` is the one at ``rate`` twice as fast (common
    random numbers, so rates are compared on the same pattern)."""
    check_bounds([rate], duration_s)
    rng = np.random.default_rng(seed)
    expected = rate * duration_s
    chunk = int(expected + 6 * math.sqrt(expected) + 16)  # nearly always enough at once
    times = np.cumsum(rng.standard_exponential(chunk)) / rate
    while times[-1] < duration_s:
        more = times[-1] + np.cumsum(rng.standard_exponential(chunk)) / rate
        times = np.concatenate([times, more])
    return times[times < duration_s]


# --- one request, and the numbers of many -------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request of a trace as the client saw it (times from the trace's start)."""

    scheduled_s: float
    sent_s: float
    seconds: float
    """Client wall-clock, send to answer."""
    status: int
    """HTTP status; 0 when no answer came (connection error, timeout)."""
    lambda_throttled: bool = False
    """A 500 carrying ``X-Lambda-Emulator-Throttled: true`` (reserved concurrency reached)."""
    instance: str | None = None
    """The environment that ran it; None when the function was not invoked."""
    cold: bool | None = None
    duration_ms: float | None = None
    """The function's duration as Lambda reports it (a cold call's includes its init)."""
    init_ms: float | None = None
    max_memory_mb: float | None = None
    error: str | None = None

    @classmethod
    def coerce(cls, record: Call | Mapping[str, Any]) -> Call:
        if isinstance(record, Call):
            return record
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    @property
    def stage_throttled(self) -> bool:
        """API Gateway's own 429: the stage's token bucket refused it (the function never ran)."""
        return self.status == 429 and self.instance is None

    @property
    def warm(self) -> bool:
        return self.cold is False


def stage_rejections(times: Iterable[float], rate: float, burst: int) -> int:
    """How many of ``times`` a token bucket of ``burst`` tokens refilled at ``rate``/s (full
    at time 0) refuses: what the stage throttle should answer 429 to."""
    tokens, last, refused = float(burst), 0.0, 0
    for t in sorted(times):
        tokens, last = min(float(burst), tokens + (t - last) * rate), t
        if tokens < 1 - 1e-9:  # a token refilled exactly on time counts (float sums)
            refused += 1
        else:
            tokens -= 1
    return refused


def peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` intervals open at once (an end before a start
    at the same instant)."""
    events = sorted(e for s, t in intervals for e in ((s, 1), (t, -1)))
    peak = open_ = 0
    for _, step in events:
        open_ += step
        peak = max(peak, open_)
    return peak


def _percentiles(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(np.asarray(values, dtype=float) * scale, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}


def cost_per_hour(
    rate: float, seconds_per_request: float, memory_mb: int, arch: str = pricing.DEFAULT_ARCH
) -> dict[str, float]:
    """USD per hour of ``rate`` requests/s, each billed ``seconds_per_request`` at
    ``memory_mb`` on ``arch``, through API Gateway (the prices of :mod:`mnist_lambda.pricing`)."""
    per_million = pricing.usd_per_million_predictions(
        seconds_per_request, memory_mb, rows_per_request=1, arch=arch
    )
    per_hour = rate * 3600 / 1e6
    return {k: round(v * per_hour, 6) for k, v in per_million.items()}


def summarize(
    records: Sequence[Call | Mapping[str, Any]],
    *,
    rate: float,
    duration_s: float,
    memory_mb: int,
    environments: int,
    stage_throttle: tuple[float, int] | None = None,
    arch: str = pricing.DEFAULT_ARCH,
) -> dict[str, Any]:
    """The numbers of one rate's trace (see the module's docstring for the formulas)."""
    calls = [Call.coerce(r) for r in records]
    served = [c for c in calls if c.status == 200]
    stage_429 = [c for c in calls if c.stage_throttled]
    lambda_500 = [c for c in calls if c.lambda_throttled]
    others = [c for c in calls if c.status != 200 and not c.stage_throttled]
    others = [c for c in others if not c.lambda_throttled]
    invoked = [c for c in calls if c.instance is not None]
    cold = sum(1 for c in invoked if c.cold)
    served_durations = [c.duration_ms for c in served if c.duration_ms is not None]
    warm_durations = [c.duration_ms for c in served if c.warm and c.duration_ms is not None]

    # environments needed: peak in flight (throttled ones as if served) and Little's law
    typical_s = float(np.median([c.seconds for c in served])) if served else None
    intervals = [
        (c.sent_s, c.sent_s + (typical_s if c.lambda_throttled and typical_s else c.seconds))
        for c in calls
        if not c.stage_throttled
    ]
    basis = warm_durations or served_durations
    little = (
        max(1, math.ceil(rate * float(np.percentile(basis, 99)) / 1000.0 - 1e-9))
        if basis
        else None
    )
    peak = peak_concurrency(intervals) if intervals else 0
    recommended = max(peak, little or 0) or None

    lags = [c.sent_s - c.scheduled_s for c in calls]
    billed = basis  # steady state: warm calls (cold ones are rare over an hour at a rate)
    mean_duration_s = float(np.mean(billed)) / 1000.0 if billed else None
    throttle = None
    if stage_throttle is not None:
        limit, burst = float(stage_throttle[0]), int(stage_throttle[1])
        throttle = {
            "rate": limit,
            "burst": burst,
            "admits_rate": rate <= limit,
            "expected_429": stage_rejections((c.scheduled_s for c in calls), limit, burst),
        }
    statuses: dict[str, int] = {}
    for c in others:
        statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
    memories = [c.max_memory_mb for c in invoked if c.max_memory_mb is not None]
    return {
        "rate": float(rate),
        "duration_s": float(duration_s),
        "sent": len(calls),
        "arrival_rate": round(len(calls) / duration_s, 3),
        "served": len(served),
        "stage_429": len(stage_429),
        "lambda_throttled_500": len(lambda_500),
        "other_errors": len(others),
        "other_statuses": dict(sorted(statuses.items())),
        "invocations": len(invoked),
        "environments_used": len({c.instance for c in invoked}),
        "cold_starts": cold,
        "cold_start_rate": round(cold / len(invoked), 4) if invoked else None,
        "latency_ms": _percentiles([c.seconds for c in served], 1000.0),
        "function_ms": _percentiles(served_durations),
        "warm_function_ms": _percentiles(warm_durations),
        "init_ms": _percentiles([c.init_ms for c in invoked if c.cold and c.init_ms is not None]),
        "max_memory_used_mb": max(memories) if memories else None,
        "send_lag_ms": {
            "max": round(max(lags) * 1000.0, 1) if lags else None,
            "late": sum(1 for lag in lags if lag > LATE_SEND_S),
        },
        "cost_per_hour_usd": (
            None
            if mean_duration_s is None
            else {
                **cost_per_hour(rate, mean_duration_s, memory_mb, arch),
                "billed_ms_per_request": math.ceil(mean_duration_s * 1000.0 - 1e-9),
                "memory_mb": memory_mb,
                "arch": arch,
                "basis": "mean warm duration" if warm_durations else "mean duration (all cold)",
            }
        ),
        "environments": environments,
        "environments_needed": {
            "peak_in_flight": peak,
            "littles_law": little,
            "recommended": recommended,
            "holds_rate": recommended is not None and recommended <= environments,
        },
        "stage_throttle": throttle,
    }


# --- the run on the stack -----------------------------------------------------------------


def run_trace(
    url: str,
    body: Mapping[str, Any],
    arrivals: Sequence[float],
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> list[Call]:
    """POST ``body`` to ``url`` at each of ``arrivals`` (s from now), open loop, no retries."""
    calls: list[Call | None] = [None] * len(arrivals)
    payload = dict(body)

    with (
        Client(url, max_attempts=1, timeout_s=timeout_s, pool_size=max_in_flight) as client,
        ThreadPoolExecutor(max_in_flight, thread_name_prefix="traffic") as pool,
    ):
        t0 = time.perf_counter()

        def one(index: int, scheduled: float) -> None:
            sent = time.perf_counter() - t0
            try:
                r = client.post(payload)
            except EndpointError as exc:
                seconds = time.perf_counter() - t0 - sent
                calls[index] = Call(scheduled, sent, seconds, 0, error=str(exc)[:300])
                return
            calls[index] = Call(
                scheduled_s=scheduled,
                sent_s=sent,
                seconds=r.seconds,
                status=r.status,
                lambda_throttled=r.lambda_throttled,
                instance=r.instance,
                cold=r.cold,
                duration_ms=r.duration_ms,
                init_ms=r.init_ms,
                max_memory_mb=r.max_memory_mb,
            )

        for index, scheduled in enumerate(arrivals):
            if (delay := t0 + scheduled - time.perf_counter()) > 0:
                time.sleep(delay)
            pool.submit(one, index, float(scheduled))
    missing = [i for i, c in enumerate(calls) if c is None]
    if missing:
        raise RuntimeError(f"{len(missing)} request(s) of the trace recorded nothing")
    return [c for c in calls if c is not None]


def _stack_settings(info: local_stack.StackInfo) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """The stack's template, its parameter overrides and the template's parameter defaults."""
    from mnist_lambda.template.reader import load_template

    template = Path(info.raw.get("template") or local_stack_template())
    overrides = {str(k): str(v) for k, v in (info.raw.get("parameters") or {}).items()}
    declared = load_template(template).get("Parameters") or {}
    return template, overrides, declared


def local_stack_template() -> Path:

    return template_path()


def _resolved(
    template: Path, overrides: Mapping[str, str]
) -> tuple[Any, tuple[float, int] | None]:
    """The function's spec and its stage throttle (rate, burst) with ``overrides``."""
    from mnist_lambda.template.reader import load_stack_spec

    spec = load_stack_spec(template, overrides)
    name = FUNCTION_ID if FUNCTION_ID in spec.functions else next(iter(spec.functions))
    api = next((r.api for r in spec.routes if r.function == name), "")
    t = spec.throttling.get(api)
    return spec.functions[name], (None if t is None else (t.rate_limit, t.burst_limit))


def architecture(template: Path, function: str = FUNCTION_ID) -> str:
    """The function's ``Architectures`` in the template (or its Globals), else x86_64."""
    from mnist_lambda.template.reader import load_template

    data = load_template(template)
    props = ((data["Resources"].get(function) or {}).get("Properties")) or {}
    globals_ = ((data.get("Globals") or {}).get("Function")) or {}
    arches = props.get("Architectures", globals_.get("Architectures"))
    arch = arches[0] if isinstance(arches, list) and arches else None
    return arch if arch in pricing.ARCHITECTURES else pricing.DEFAULT_ARCH


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
    check_bounds(rates, duration_s)
    if environments is not None and not 1 <= environments <= MAX_ENVIRONMENTS:
        raise ValueError(f"environments must be 1..{MAX_ENVIRONMENTS}, got {environments}")
    if memory_mb is not None:
        check_memory_size(memory_mb)
    if throttle is not None and not (throttle[0] >= 1 and int(throttle[1]) >= 1):
        raise ValueError(f"stage throttle (rate, burst) must be >= (1, 1), got {throttle}")
    info = local_stack.read(state_dir) or info
    template, overrides, declared = _stack_settings(info)
    missing = [p for p in ("ReservedConcurrency", "MemorySize") if p not in declared]
    if throttle is not None:
        missing += [p for p in ("ThrottleRateLimit", "ThrottleBurstLimit") if p not in declared]
    if missing:
        raise ValueError(f"{template} has no parameter {', '.join(missing)}")

    if environments is None:
        reserved = _resolved(template, overrides)[0].reserved_concurrency or 0
        if reserved > 0:
            environments = min(reserved, MAX_ENVIRONMENTS)
            source = f"the stack's ReservedConcurrency ({reserved})"
            if reserved > MAX_ENVIRONMENTS:
                source += f", capped at the {MAX_ENVIRONMENTS} a local what-if runs"
        else:
            environments = LOCAL_DEFAULT_ENVIRONMENTS
            source = (
                "local default: the template reserves no concurrency (ReservedConcurrency 0 = "
                f"unreserved, AWS would scale up to the account's limit), so "
                f"{LOCAL_DEFAULT_ENVIRONMENTS} environments"
            )
    else:
        source = "asked for"
    parameters = {"ReservedConcurrency": str(environments)}
    if memory_mb is not None:
        parameters["MemorySize"] = str(memory_mb)
    if throttle is not None:
        parameters["ThrottleRateLimit"] = f"{float(throttle[0]):g}"
        parameters["ThrottleBurstLimit"] = str(int(throttle[1]))
    restore = {
        k: overrides.get(k, str((declared.get(k) or {}).get("Default", ""))) for k in parameters
    }
    fspec, stage_throttle = _resolved(template, overrides | parameters)
    body = {"bucket": bucket, "key": key}
    arch = architecture(template)
    results: list[dict[str, Any]] = []
    deployed_mb = fspec.memory_size
    try:
        for rate in rates:
            # instances too: a stack started with none (S3 and the API only) gets them
            current = local_stack.redeploy(
                state_dir, parameters=parameters, instances=environments
            )
            deployed = next(iter((current.raw.get("functions") or {}).values()), {})
            running = int(deployed.get("environments", environments))
            if running != environments:
                raise RuntimeError(f"the stack runs {running} environments, not {environments}")
            deployed_mb = current.memory_mb or deployed_mb
            calls = run_trace(current.predict_url, body, arrival_times(rate, duration_s, seed))
            results.append(
                summarize(
                    calls,
                    rate=rate,
                    duration_s=duration_s,
                    memory_mb=deployed_mb,
                    environments=environments,
                    stage_throttle=stage_throttle,
                    arch=arch,
                )
            )
    finally:
        if local_stack.read(state_dir) is not None:
            local_stack.redeploy(state_dir, parameters=restore, instances=info.instances)
    return {
        "environments": environments,
        "environments_source": source,
        "duration_s": float(duration_s),
        "seed": seed,
        "memory_mb": deployed_mb,
        "arch": arch,
        "stage_throttle": (
            None
            if stage_throttle is None
            else {"rate": stage_throttle[0], "burst": stage_throttle[1]}
        ),
        "bucket": bucket,
        "key": key,
        "rates": results,
    }


# --- presenting it ------------------------------------------------------------------------


def table(result: Mapping[str, Any]) -> str:
    """The what-if as a Markdown table, one row per rate, with its settings above."""
    throttle = result.get("stage_throttle")
    stage = f"{throttle['rate']:g}/s, burst {throttle['burst']}" if throttle else "none"
    lines = [
        f"{result['environments']} environment(s) ({result['environments_source']}), "
        f"{result['memory_mb']} MB, stage throttle {stage}, {result['duration_s']:g} s per rate, "
        f"seed {result['seed']}",
        "",
        "| rate/s | sent | served | 429 stage | 500 Lambda | other | cold | p50 ms | p99 ms "
        "| fn p99 ms | USD/hour | envs needed (peak, Little) | stage admits |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in result["rates"]:
        cost = r["cost_per_hour_usd"]
        need = r["environments_needed"]
        admits = r["stage_throttle"]["admits_rate"] if r["stage_throttle"] else True
        lines.append(
            f"| {r['rate']:g} | {r['sent']} | {r['served']} | {r['stage_429']} "
            f"| {r['lambda_throttled_500']} | {r['other_errors']} | {r['cold_starts']} "
            f"| {_fmt(r['latency_ms']['p50'])} | {_fmt(r['latency_ms']['p99'])} "
            f"| {_fmt(r['function_ms']['p99'])} | {_fmt(cost and cost['total'], '.4f')} "
            f"| {need['recommended']} ({need['peak_in_flight']}, {need['littles_law']}) "
            f"| {'yes' if admits else 'no'} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def traffic_figure(result: Mapping[str, Any]) -> Figure:
    """Per rate: stacked bars of served / stage 429 / Lambda 500 / other, and p50/p99 latency."""
    from matplotlib.figure import Figure

    rows = result["rates"]
    labels = [f"{r['rate']:g}/s" for r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(11, 4.2))
    ax, ax2 = fig.subplots(1, 2)
    bottom = np.zeros(len(rows))
    parts = (
        ("served", "served (200)", "tab:green"),
        ("stage_429", "429 stage throttle", "tab:orange"),
        ("lambda_throttled_500", "500 Lambda throttled", "tab:red"),
        ("other_errors", "other errors", "tab:gray"),
    )
    for name, label, color in parts:
        values = np.array([r[name] for r in rows], dtype=float)
        ax.bar(x, values, bottom=bottom, color=color, label=label)
        bottom += values
    ax.set(xticks=x, xticklabels=labels, xlabel="offered rate", ylabel="requests")
    ax.set_title(f"{result['environments']} environment(s), {result['duration_s']:g} s per rate")
    ax.legend(fontsize=8)
    for key, style in (("p50", "o-"), ("p99", "s--")):
        values = [r["latency_ms"][key] for r in rows]
        ax2.plot(x, [np.nan if v is None else v for v in values], style, label=f"{key} latency")
    for i, r in enumerate(rows):
        p99 = r["latency_ms"]["p99"]
        if p99 is not None:
            ax2.annotate(f"{r['cold_starts']} cold", (i, p99), textcoords="offset points",
                         xytext=(4, 4), fontsize=8)  # fmt: skip
    ax2.set(xticks=x, xticklabels=labels, xlabel="offered rate", ylabel="ms (client, served)")
    ax2.margins(x=0.2)
    throttle = result.get("stage_throttle")
    stage = f"stage {throttle['rate']:g}/s burst {throttle['burst']}" if throttle else ""
    ax2.set_title(f"latency, {result['memory_mb']} MB {stage}".strip())
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig
