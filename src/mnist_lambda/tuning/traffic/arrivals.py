"""The arrival model: a seeded Poisson trace per rate, and how much traffic one what-if may send.

Bounded: at most :data:`MAX_REQUESTS` expected requests (sum of rate x duration) and
:data:`MAX_TRAFFIC_S` seconds of traffic (rates x duration) per what-if.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_REQUESTS = 5000
"""Expected requests (sum over the rates of rate x duration) one what-if may send."""
MAX_TRAFFIC_S = 300.0
"""Seconds of traffic (number of rates x duration) one what-if may take."""


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
