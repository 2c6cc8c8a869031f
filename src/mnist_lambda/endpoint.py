"""Judge the endpoint: latency summaries and what a million predictions cost on AWS.

Calling it is :mod:`mnist_lambda.client`; this module is the pricing and the arithmetic on the
durations a client measured.
"""

from __future__ import annotations

import numpy as np

# AWS list prices (us-east-1, x86, on-demand), checked 2026-11: Lambda compute per GB-second,
# Lambda requests and API Gateway REST API requests per million.
LAMBDA_USD_PER_GB_SECOND = 0.0000166667
LAMBDA_USD_PER_MILLION_REQUESTS = 0.20
APIGW_REST_USD_PER_MILLION_REQUESTS = 3.50


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
    seconds_per_request: float, memory_mb: int, rows_per_request: int, api_gateway: bool = True
) -> dict[str, float]:
    """Lambda (and API Gateway) cost of a million predictions made ``rows_per_request`` at a time.

    Lambda bills duration rounded up to the millisecond times the configured memory.
    """
    requests_per_million = 1e6 / rows_per_request
    billed_seconds = np.ceil(seconds_per_request * 1000.0) / 1000.0
    compute = billed_seconds * (memory_mb / 1024.0) * LAMBDA_USD_PER_GB_SECOND
    lambda_usd = requests_per_million * (compute + LAMBDA_USD_PER_MILLION_REQUESTS / 1e6)
    apigw_usd = (
        requests_per_million * APIGW_REST_USD_PER_MILLION_REQUESTS / 1e6 if api_gateway else 0.0
    )
    return {
        "lambda": float(lambda_usd),
        "api_gateway": float(apigw_usd),
        "total": float(lambda_usd + apigw_usd),
    }
