"""One rate's numbers from its :class:`~.trace.Call` records.

Environments needed to hold a rate without Lambda throttling, both reported:

* ``peak_in_flight``: the largest number of requests in flight at once on the client's clock
  (send to answer), among the requests the stage admitted; a request Lambda throttled counts as
  if it had been served in the median served latency (what it would have occupied);
* ``littles_law``: ``ceil(rate x p99 warm function duration)`` (:func:`.queueing.littles_law`;
  cold durations only if no call was warm), >= 1.

Cost per hour at a rate is the steady state with every request served: ``rate x 3600``
requests, each billed the mean measured duration of the warm calls (rounded up to the ms; the
mean of all served calls if none was warm) at the configured memory, plus Lambda's and API
Gateway's per-request prices (:mod:`mnist_lambda.pricing`, the function's architecture). Over
an hour the few cold starts weigh little; their count and init time are reported apart (a cold
call's duration includes its init, which Lambda bills since August 2025).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mnist_lambda import pricing
from mnist_lambda.tuning.traffic.queueing import littles_law, peak_concurrency, stage_rejections
from mnist_lambda.tuning.traffic.trace import Call

LATE_SEND_S = 0.05
"""A request sent more than this after its scheduled time is counted as a late send."""


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
    invoked = [c for c in calls if c.instance is not None]
    served_ms = [c.duration_ms for c in served if c.duration_ms is not None]
    warm_ms = [c.duration_ms for c in served if c.warm and c.duration_ms is not None]
    basis = warm_ms or served_ms  # steady state: warm calls (cold ones are rare over an hour)
    memories = [c.max_memory_mb for c in invoked if c.max_memory_mb is not None]
    return {
        "rate": float(rate),
        "duration_s": float(duration_s),
        **_outcomes(calls, duration_s),
        **_invocations(invoked),
        "latency_ms": _percentiles([c.seconds for c in served], 1000.0),
        "function_ms": _percentiles(served_ms),
        "warm_function_ms": _percentiles(warm_ms),
        "init_ms": _percentiles([c.init_ms for c in invoked if c.cold and c.init_ms is not None]),
        "max_memory_used_mb": max(memories) if memories else None,
        "send_lag_ms": _send_lag(calls),
        "cost_per_hour_usd": _cost(rate, basis, memory_mb, arch, all_cold=not warm_ms),
        "environments": environments,
        "environments_needed": _environments_needed(calls, rate, basis, environments),
        "stage_throttle": _stage_throttle(calls, rate, stage_throttle),
    }


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


def _outcomes(calls: Sequence[Call], duration_s: float) -> dict[str, Any]:
    """How many were sent, served, refused by the stage, throttled by Lambda, or failed."""
    others = [
        c for c in calls if c.status != 200 and not (c.stage_throttled or c.lambda_throttled)
    ]
    statuses: dict[str, int] = {}
    for c in others:
        statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
    return {
        "sent": len(calls),
        "arrival_rate": round(len(calls) / duration_s, 3),
        "served": sum(1 for c in calls if c.status == 200),
        "stage_429": sum(1 for c in calls if c.stage_throttled),
        "lambda_throttled_500": sum(1 for c in calls if c.lambda_throttled),
        "other_errors": len(others),
        "other_statuses": dict(sorted(statuses.items())),
    }


def _invocations(invoked: Sequence[Call]) -> dict[str, Any]:
    """The calls that ran the function: how many, in how many environments, how many cold."""
    cold = sum(1 for c in invoked if c.cold)
    return {
        "invocations": len(invoked),
        "environments_used": len({c.instance for c in invoked}),
        "cold_starts": cold,
        "cold_start_rate": round(cold / len(invoked), 4) if invoked else None,
    }


def _percentiles(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(np.asarray(values, dtype=float) * scale, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}


def _send_lag(calls: Sequence[Call]) -> dict[str, Any]:
    """The latest send after its scheduled time, and how many were late."""
    lags = [c.sent_s - c.scheduled_s for c in calls]
    return {
        "max": round(max(lags) * 1000.0, 1) if lags else None,
        "late": sum(1 for lag in lags if lag > LATE_SEND_S),
    }


def _cost(
    rate: float, basis_ms: Sequence[float], memory_mb: int, arch: str, *, all_cold: bool
) -> dict[str, Any] | None:
    """:func:`cost_per_hour` at the mean of ``basis_ms``, with what it was computed from."""
    if not basis_ms:
        return None
    mean_s = float(np.mean(basis_ms)) / 1000.0
    return {
        **cost_per_hour(rate, mean_s, memory_mb, arch),
        "billed_ms_per_request": math.ceil(mean_s * 1000.0 - 1e-9),
        "memory_mb": memory_mb,
        "arch": arch,
        "basis": "mean duration (all cold)" if all_cold else "mean warm duration",
    }


def _environments_needed(
    calls: Sequence[Call], rate: float, basis_ms: Sequence[float], environments: int
) -> dict[str, Any]:
    """Peak in flight (a Lambda-throttled call as if served) and Little's law; the larger."""
    served_s = [c.seconds for c in calls if c.status == 200]
    typical_s = float(np.median(served_s)) if served_s else None
    intervals = [
        (c.sent_s, c.sent_s + (typical_s if c.lambda_throttled and typical_s else c.seconds))
        for c in calls
        if not c.stage_throttled
    ]
    peak = peak_concurrency(intervals)
    little = littles_law(rate, basis_ms)
    recommended = max(peak, little or 0) or None
    return {
        "peak_in_flight": peak,
        "littles_law": little,
        "recommended": recommended,
        "holds_rate": recommended is not None and recommended <= environments,
    }


def _stage_throttle(
    calls: Sequence[Call], rate: float, stage_throttle: tuple[float, int] | None
) -> dict[str, Any] | None:
    """Whether the stage's (rate, burst) admits ``rate``, and the 429s its bucket predicts."""
    if stage_throttle is None:
        return None
    limit, burst = float(stage_throttle[0]), int(stage_throttle[1])
    return {
        "rate": limit,
        "burst": burst,
        "admits_rate": rate <= limit,
        "expected_429": stage_rejections((c.scheduled_s for c in calls), limit, burst),
    }
