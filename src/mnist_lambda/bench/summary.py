"""The measurements summed up: medians, percentiles and cost per configuration, and the ratios
tutorial/ours against the targets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mnist_lambda.bench.profile import A, B, Profile
from mnist_lambda.client import latency_summary
from mnist_lambda.pricing import DEFAULT_ARCH, PRICES, usd_per_million_predictions

TARGETS = {"cold_start": 5.0, "warm_p50": 5.0, "model_artifact": 20.0, "s3_object": 8.0}
"""The smallest ratio tutorial/ours each target asks for."""


def warm_size(calls: list[dict[str, Any]], memory_mb: int, ours_mb: int, n: int) -> dict[str, Any]:
    """The warm calls of ``n``-row requests: client-side latency (ms), the function's own p50 and
    the cost of a million predictions at ``memory_mb`` and at ours."""
    fn_ms = [c["function_ms"] for c in calls if c["function_ms"] is not None]
    fn_s = float(np.median(fn_ms)) / 1000 if fn_ms else None
    latency = latency_summary([c["seconds"] for c in calls])
    return {
        "latency_ms": {k: v * 1000 if k != "n" else v for k, v in latency.items()},
        "function_ms_p50": fn_s * 1000 if fn_s else None,
        "usd_per_million": usd_per_million_predictions(fn_s, memory_mb, n) if fn_s else None,
        "usd_per_million_at_our_memory": (
            usd_per_million_predictions(fn_s, ours_mb, n) if fn_s else None
        ),
    }


def side_summary(results: dict[str, Any], profile: Profile, name: str) -> dict[str, Any]:
    """One configuration's cold start, warm calls per size, bytes, memory and accuracy."""
    cold, memory = results["cold"][name], results["memory_mb"][name]
    return {
        "cold_first_response_ms_p50": float(np.median([c["first_response_ms"] for c in cold])),
        "cold_init_ms_p50": float(np.median([c["init_ms"] or 0 for c in cold])),
        "cold_all_cold": all(c["cold"] for c in cold),
        "warm": {
            str(n): warm_size(results["warm"][name][str(n)], memory, results["memory_mb"][B], n)
            for n in profile.sizes
        },
        "artifact_bytes": results["artifact_bytes"][name],
        "object_bytes": results["object_bytes"][name],
        "peak_mb": results["peak_mb"][name],
        "accuracy": results["accuracy"][name],
        "memory_mb": memory,
    }


def summary(results: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """Medians, percentiles and cost per configuration, and the prices assumed."""
    out: dict[str, Any] = {name: side_summary(results, profile, name) for name in (A, B)}
    out["price"] = {
        "lambda_usd_per_gb_second": PRICES.lambda_usd_per_gb_second[DEFAULT_ARCH],
        "lambda_usd_per_million_requests": PRICES.lambda_usd_per_million_requests,
        "api_gateway_usd_per_million_requests": PRICES.api_gateway_rest_usd_per_million_requests,
    }
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def targets(results: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """Ratios tutorial/ours against the targets; for the timed ones, also the median of the
    per-pair ratios (each A/B pair ran back to back: robust to drift)."""
    s = results["summary"]
    size = "2000" if "2000" in s[A]["warm"] else str(profile.sizes[-1])
    obj = str(profile.sizes[0])
    warm_key = f"warm_p50_{size}_rows"
    rows = {
        "cold_start": (
            _ratio(s[A]["cold_first_response_ms_p50"], s[B]["cold_first_response_ms_p50"]),
            TARGETS["cold_start"],
        ),
        "cold_init": (_ratio(s[A]["cold_init_ms_p50"], s[B]["cold_init_ms_p50"]), None),
        warm_key: (
            _ratio(
                s[A]["warm"][size]["latency_ms"]["p50"], s[B]["warm"][size]["latency_ms"]["p50"]
            ),
            TARGETS["warm_p50"],
        ),
        "model_artifact": (
            _ratio(s[A]["artifact_bytes"], s[B]["artifact_bytes"]),
            TARGETS["model_artifact"],
        ),
        f"s3_object_{obj}_rows": (
            _ratio(s[A]["object_bytes"][obj], s[B]["object_bytes"][obj]),
            TARGETS["s3_object"],
        ),
    }
    out = {
        name: {"ratio": round(r, 2), "target": t, "met": None if t is None else r >= t}
        for name, (r, t) in rows.items()
    }
    cold_pairs = _pair_ratios(results["cold"][A], results["cold"][B], "first_response_ms")
    warm_pairs = _pair_ratios(results["warm"][A][size], results["warm"][B][size], "seconds")
    out["cold_start"]["pair_ratios"] = [round(r, 2) for r in cold_pairs]
    out["cold_start"]["pair_ratio_median"] = round(float(np.median(cold_pairs)), 2)
    out[warm_key]["pair_ratio_median"] = round(float(np.median(warm_pairs)), 2)
    out["accuracy"] = {
        "tutorial": s[A]["accuracy"],
        "ours": s[B]["accuracy"],
        "met": s[B]["accuracy"] >= s[A]["accuracy"],
    }
    return out


def _pair_ratios(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> list[float]:
    """``a[i][key] / b[i][key]`` for each pair."""
    return [x[key] / y[key] for x, y in zip(a, b, strict=True)]
