"""Judge the endpoint: latency summaries and what a million predictions cost on AWS.

Calling it is :mod:`mnist_lambda.client`; the prices are :mod:`mnist_lambda.pricing`; this module
is the arithmetic on the durations a client measured.
"""

from __future__ import annotations

import numpy as np

from mnist_lambda import pricing

# The prices live in mnist_lambda.pricing (one table); these names stay for older callers.
LAMBDA_USD_PER_GB_SECOND = pricing.PRICES.lambda_usd_per_gb_second["x86_64"]
LAMBDA_USD_PER_MILLION_REQUESTS = pricing.PRICES.lambda_usd_per_million_requests
APIGW_REST_USD_PER_MILLION_REQUESTS = pricing.PRICES.api_gateway_rest_usd_per_million_requests


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50, p95, mean, min, max and count of a list of durations."""
    values = np.asarray(seconds, dtype=float)
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "n": int(values.size),
    }


def usd_per_million_predictions(
    seconds_per_request: float,
    memory_mb: int,
    rows_per_request: int,
    api_gateway: bool = True,
    arch: str = pricing.DEFAULT_ARCH,
) -> dict[str, float]:
    """Lambda (and API Gateway) cost of a million predictions made ``rows_per_request`` at a time
    on ``arch`` (``x86_64`` or ``arm64``); see :mod:`mnist_lambda.pricing`.

    Lambda bills duration rounded up to the millisecond times the configured memory.
    """
    return pricing.usd_per_million_predictions(
        seconds_per_request, memory_mb, rows_per_request, api_gateway=api_gateway, arch=arch
    )
