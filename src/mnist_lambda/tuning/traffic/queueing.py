"""Queue maths of a trace: the stage's token bucket, requests in flight and Little's law."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


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


def littles_law(rate: float, durations_ms: Sequence[float]) -> int | None:
    """``ceil(rate x p99 of durations_ms)``, at least 1: the environments Little's law
    (L = lambda W) asks for, with the p99 instead of the mean for headroom; None without
    durations."""
    if not durations_ms:
        return None
    p99_ms = float(np.percentile(durations_ms, 99))
    return max(1, math.ceil(rate * p99_ms / 1000.0 - 1e-9))
