"""The sweep: one local stack, one variant, one MemorySize after another.

For each MemorySize the stack is redeployed (:func:`mnist_lambda.local_stack.redeploy` with the
``MemorySize`` parameter: memory limit, CPU quota and the function's environment follow), then
called once cold and ``warm`` times warm through :class:`mnist_lambda.client.Client` (no
retries: a sweep counts failures, it never hides them). Warm durations are the emulator's
function duration (``X-Lambda-Emulator-Duration-Ms``), what Lambda bills; the client's
wall-clock when the headers are missing. The cold start is the client's wall-clock of the cold
call (init included). With ``snapstart``, each setting also gets a cold call on a SnapStart
deployment (the emulated restore instead of the init; :mod:`mnist_lambda.local_stack.snapstart`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mnist_lambda import local_stack, pricing
from mnist_lambda.aws_limits import vcpu_share
from mnist_lambda.bench.probes import function_peak_mb
from mnist_lambda.client import Client, EndpointError, Result
from mnist_lambda.template import MEMORY_PARAMETER
from mnist_lambda.tuning.variants import Variant

CALL_TIMEOUT_S = 60.0


@contextlib.contextmanager
def deployed(
    variant: Variant, state_dir: Path, memory_mb: int, timeout: float = 180
) -> Iterator[Any]:
    """A one-environment stack in ``state_dir`` serving ``variant`` at ``memory_mb``, its
    request object uploaded; yields the StackInfo and always stops the stack."""
    kwargs = dict(variant.start_kwargs)
    kwargs["extra_args"] = [*kwargs.get("extra_args", ()), "-P", f"{MEMORY_PARAMETER}={memory_mb}"]
    local_stack.stop(state_dir)  # one a killed sweep left would be reused whatever it serves
    try:
        info = local_stack.start(state_dir, instances=1, timeout=timeout, **kwargs)
        s3 = local_stack.s3_client(info)
        s3.put_object(Bucket=info.bucket, Key=variant.key, Body=variant.body)
        yield info
    finally:
        local_stack.stop(state_dir)


def _seconds(result: Result) -> float:
    """What Lambda would bill for a warm call: the emulator's duration, else wall-clock."""
    ms = result.function_ms
    return ms / 1000.0 if ms is not None else result.seconds


def usd_per_million(seconds: float, memory_mb: int, rows: int) -> dict[str, dict[str, float]]:
    """``{arch: {"lambda", "api_gateway", "total"}}`` for each architecture, at ``seconds``."""
    return {
        arch: pricing.usd_per_million_predictions(seconds, memory_mb, rows, arch=arch)
        for arch in pricing.ARCHITECTURES
    }


def measure(
    client: Client, bucket: str, variant: Variant, memory_mb: int, warm: int
) -> dict[str, Any]:
    """One cold and ``warm`` warm calls on a freshly deployed stack; one result."""
    rows = len(variant.expected)
    result: dict[str, Any] = {
        "memory_mb": memory_mb,
        "vcpus": vcpu_share(memory_mb, psutil.cpu_count() or 1),
        "rows": rows,
        "error": None,
    }
    calls: list[Result] = []
    try:
        calls.append(client.predict(bucket, variant.key))
        for _ in range(warm):
            calls.append(client.predict(bucket, variant.key))
    except EndpointError as exc:
        result["error"] = str(exc)[:500]
    cold, warm_calls = (calls[0], calls[1:]) if calls else (None, [])
    agree = [
        float(np.mean(c.labels == variant.expected)) if len(c.labels) == rows else 0.0
        for c in calls
    ]
    peaks = [c.max_memory_mb for c in calls if c.max_memory_mb is not None]
    result |= {
        "cold": cold.cold if cold else None,
        "cold_start_seconds": cold.seconds if cold else None,
        "init_ms": cold.init_ms if cold else None,
        "cold_function_ms": cold.function_ms if cold else None,
        "warm_calls": len(warm_calls),
        "warm_cold_calls": sum(bool(c.cold) for c in warm_calls),
        "warm_seconds": [_seconds(c) for c in warm_calls],
        "warm_source": "emulator function duration"
        if all(c.function_ms is not None for c in warm_calls)
        else "client wall-clock",
        "warm_client_seconds": [c.seconds for c in warm_calls],
        "peak_memory_mb": max(peaks) if peaks else None,
        "agreement": float(np.mean(agree)) if agree else None,
        "warm_p50_seconds": None,
        "warm_p95_seconds": None,
        "warm_min_seconds": None,
        "usd_per_million": None,
    }
    if warm_calls and not result["error"]:
        seconds = np.asarray(result["warm_seconds"])
        p50 = float(np.percentile(seconds, 50))
        result |= {
            "warm_p50_seconds": p50,
            "warm_p95_seconds": float(np.percentile(seconds, 95)),
            "warm_min_seconds": float(seconds.min()),
            "usd_per_million": usd_per_million(p50, memory_mb, rows),
        }
    return result


def restored_cold_start(
    client: Client, state_dir: Path, variant: Variant, memory_mb: int
) -> dict[str, Any]:
    """One cold call on a SnapStart deployment at ``memory_mb``: the restore, not the init."""
    parameters = {MEMORY_PARAMETER: str(memory_mb), "SnapStart": "PublishedVersions"}
    info = local_stack.redeploy(state_dir, parameters=parameters)
    try:
        call = client.predict(info.bucket, variant.key)
    except EndpointError as exc:
        return {"error": str(exc)[:500]}
    return {
        "error": None,
        "cold_start_seconds": call.seconds,
        "restore_ms": call.restore_ms,
        "function_ms": call.function_ms,
        "agreement": float(np.mean(call.labels == variant.expected)),
        "label": "emulated: a fork of the snapshot environment (docs/local-stack.md)",
    }


def sweep(
    variant: Variant,
    state_dir: Path,
    info: Any,
    memory: Sequence[int],
    warm: int,
    bar: Any = None,
    snapstart: bool = False,
) -> list[dict[str, Any]]:
    """Measure ``variant`` at each MemorySize of ``memory`` on the stack ``info`` (started by
    :func:`deployed` at ``memory[0]``); ``bar`` (:class:`mnist_lambda.progress_bar.Bar`) gets
    one line per setting. With ``snapstart``, each setting also gets :func:`restored_cold_start`
    (``result["snapstart"]``)."""
    results = []
    auth = local_stack.endpoint_auth(info)  # an authenticated stack's own caller
    with Client(info.predict_url, max_attempts=1, timeout_s=CALL_TIMEOUT_S, auth=auth) as client:
        for i, memory_mb in enumerate(memory):
            if bar is not None:
                bar.set_description(f"{variant.name} {memory_mb} MB")
            parameters = {MEMORY_PARAMETER: str(memory_mb)} | (
                {"SnapStart": "None"} if snapstart else {}
            )
            if i > 0 or info.memory_mb != memory_mb:  # a just-started stack is fresh already
                info = local_stack.redeploy(state_dir, parameters=parameters)
            if info.memory_mb != memory_mb:
                raise RuntimeError(f"asked for {memory_mb} MB, the stack runs {info.memory_mb}")
            result = measure(client, info.bucket, variant, memory_mb, warm)
            if result["peak_memory_mb"] is None:  # limits not enforced: the runtime's VmHWM
                result["peak_memory_mb"] = function_peak_mb(state_dir)
                result["peak_memory_source"] = "runtime VmHWM"
            else:
                result["peak_memory_source"] = "cgroup peak"
            if snapstart:
                result["snapstart"] = restored_cold_start(client, state_dir, variant, memory_mb)
            results.append(result)
            if bar is not None:
                bar.write(progress_line(variant.name, result))
                bar.update()
    return results


def progress_line(name: str, r: dict[str, Any]) -> str:
    """One setting on one line."""
    head = f"{name:>8} {r['memory_mb']:>6} MB"
    if r["error"]:
        return f"{head}  FAILED after {len(r['warm_seconds'])} warm call(s): {r['error'][:120]}"
    cost = r["usd_per_million"]
    peak = r["peak_memory_mb"]
    snap = r.get("snapstart") or {}
    restored = ""
    if snap.get("cold_start_seconds") is not None:
        restore = f"restore {snap['restore_ms'] or 0:.0f} ms"
        restored = f" / SnapStart {snap['cold_start_seconds']:.2f} s ({restore})"
    init = f"init {r['init_ms'] or 0:.0f} ms"
    return (
        f"{head}  cold {r['cold_start_seconds']:.2f} s ({init}){restored}  "
        f"warm p50 {r['warm_p50_seconds'] * 1000:.0f} ms p95 {r['warm_p95_seconds'] * 1000:.0f} ms"
        f"  peak {f'{peak:.0f}' if peak else '?'} MB  "
        f"${cost['x86_64']['lambda']:.4f}/M x86_64  ${cost['arm64']['lambda']:.4f}/M arm64  "
        f"agreement {r['agreement']:.2%}"
    )
