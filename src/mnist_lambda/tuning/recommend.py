"""Which MemorySize to deploy, by a stated rule over the sweep's results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TOLERANCE = 0.10
ARCH = "x86_64"
RULE = (
    "the cheapest setting (Lambda cost of a million predictions on x86_64, at the warm p50 "
    "duration) among those whose warm p50 is within 10 % of the fastest setting's; ties go to "
    "the faster, then to the smaller memory. API Gateway charges the same per request at every "
    "memory size, so it cannot change the choice."
)


def lambda_cost(result: Mapping[str, Any], arch: str = ARCH) -> float:
    """A result's Lambda USD per million predictions on ``arch``."""
    return float(result["usd_per_million"][arch]["lambda"])


def usable(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The settings that answered every call (no ``error``) with a warm duration."""
    return [r for r in results if not r.get("error") and r.get("warm_p50_seconds") is not None]


def recommend(
    results: Sequence[Mapping[str, Any]], tolerance: float = TOLERANCE, arch: str = ARCH
) -> dict[str, Any]:
    """The setting :data:`RULE` picks (``tolerance`` is the 10 %), with what it was chosen from.

    Raises ValueError when no setting has a usable result.
    """
    ok = usable(results)
    if not ok:
        raise ValueError("no memory setting answered every call: nothing to recommend")
    fastest = min(ok, key=lambda r: (r["warm_p50_seconds"], r["memory_mb"]))
    limit = fastest["warm_p50_seconds"] * (1.0 + tolerance)
    candidates = [r for r in ok if r["warm_p50_seconds"] <= limit * (1 + 1e-12)]
    best = min(
        candidates, key=lambda r: (lambda_cost(r, arch), r["warm_p50_seconds"], r["memory_mb"])
    )
    rule = RULE if (tolerance, arch) == (TOLERANCE, ARCH) else _rule(tolerance, arch)
    return {
        "memory_mb": int(best["memory_mb"]),
        "rule": rule,
        "tolerance": tolerance,
        "arch": arch,
        "warm_p50_seconds": best["warm_p50_seconds"],
        "usd_per_million": best["usd_per_million"][arch],
        "fastest_memory_mb": int(fastest["memory_mb"]),
        "fastest_warm_p50_seconds": fastest["warm_p50_seconds"],
        "candidates_mb": sorted(int(r["memory_mb"]) for r in candidates),
    }


def _rule(tolerance: float, arch: str) -> str:
    return RULE.replace("x86_64", arch).replace("10 %", f"{tolerance:.0%}".replace("%", " %"))
