"""Call the deployed endpoint and judge it: agreement, latency, cost."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import requests

# AWS list prices (us-east-1, x86, on-demand), checked 2026-11: Lambda compute per GB-second,
# Lambda requests and API Gateway REST API requests per million.
LAMBDA_USD_PER_GB_SECOND = 0.0000166667
LAMBDA_USD_PER_MILLION_REQUESTS = 0.20
APIGW_REST_USD_PER_MILLION_REQUESTS = 3.50


class EndpointError(RuntimeError):
    """The endpoint answered with an error; the message carries its status and body."""


@dataclass
class Call:
    labels: np.ndarray
    seconds: float
    status: int
    headers: dict[str, str] = field(default_factory=dict)

    def function_ms(self) -> float | None:
        """The invocation's duration reported by the local stack's emulator, without init."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        total = headers.get("x-lambda-emulator-duration-ms")
        if total is None:
            return None
        init = headers.get("x-lambda-emulator-init-duration-ms") or 0
        return float(total) - float(init)

    def init_ms(self) -> float | None:
        """The cold start's init duration reported by the emulator (None when warm)."""
        value = {k.lower(): v for k, v in self.headers.items()}.get(
            "x-lambda-emulator-init-duration-ms"
        )
        return float(value) if value else None


def predict(url: str, bucket: str, key: str, timeout: float = 35.0) -> Call:
    """POST ``{"bucket", "key"}`` and return the labels (the tutorial's contract)."""
    start = time.perf_counter()
    response = requests.post(url, json={"bucket": bucket, "key": key}, timeout=timeout)
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise EndpointError(f"POST {url} answered {response.status_code}: {response.text[:500]}")
    return Call(np.array(response.json()), seconds, response.status_code, dict(response.headers))


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
