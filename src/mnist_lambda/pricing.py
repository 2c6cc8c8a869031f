"""AWS prices, in one table, and what a request or a million predictions costs.

On-demand list prices in us-east-1, as recorded in :data:`PRICES` with the date they were
checked. Lambda bills each request plus its duration, rounded up to the millisecond, times the
configured memory in GB (``MemorySize / 1024``); API Gateway (REST) bills each request. Used by
:mod:`mnist_lambda.client` (notebook 05, ``bench``) and :mod:`mnist_lambda.tuning`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

ARCHITECTURES = ("x86_64", "arm64")
DEFAULT_ARCH = "x86_64"


@dataclass(frozen=True)
class Prices:
    """One region's prices (USD)."""

    region: str
    checked: str
    """When the prices were last read off the AWS pricing pages."""
    lambda_usd_per_gb_second: Mapping[str, float] = field(default_factory=dict)
    """By architecture (``x86_64``, ``arm64``), first pricing tier."""
    lambda_usd_per_million_requests: float = 0.0
    api_gateway_rest_usd_per_million_requests: float = 0.0
    """REST API, first 333 million requests a month."""
    billing_granularity_ms: int = 1

    def as_dict(self) -> dict[str, object]:
        """The table as plain data (for a results file)."""
        return {**asdict(self), "lambda_usd_per_gb_second": dict(self.lambda_usd_per_gb_second)}


PRICES = Prices(
    region="us-east-1",
    checked="2026-11",
    lambda_usd_per_gb_second={"x86_64": 0.0000166667, "arm64": 0.0000133334},
    lambda_usd_per_million_requests=0.20,
    api_gateway_rest_usd_per_million_requests=3.50,
)


def billed_seconds(seconds: float, prices: Prices = PRICES) -> float:
    """A duration as Lambda bills it: rounded up to the billing granularity (1 ms)."""
    ms = round(seconds * 1000.0, 6)  # 0.57 s is 570 ms, not 570.0000000000001
    step = prices.billing_granularity_ms
    return math.ceil(ms / step) * step / 1000.0


def lambda_usd_per_request(
    seconds: float, memory_mb: int, arch: str = DEFAULT_ARCH, prices: Prices = PRICES
) -> float:
    """Lambda's charge for one request of ``seconds`` at ``memory_mb``: duration + request."""
    if arch not in prices.lambda_usd_per_gb_second:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHITECTURES)}")
    gb_seconds = billed_seconds(seconds, prices) * memory_mb / 1024.0
    return (
        gb_seconds * prices.lambda_usd_per_gb_second[arch]
        + prices.lambda_usd_per_million_requests / 1e6
    )


def usd_per_million_predictions(
    seconds_per_request: float,
    memory_mb: int,
    rows_per_request: int,
    api_gateway: bool = True,
    arch: str = DEFAULT_ARCH,
    prices: Prices = PRICES,
) -> dict[str, float]:
    """``lambda``, ``api_gateway`` and ``total`` USD for a million predictions made
    ``rows_per_request`` at a time, each request taking ``seconds_per_request``."""
    requests_per_million = 1e6 / rows_per_request
    lambda_usd = requests_per_million * lambda_usd_per_request(
        seconds_per_request, memory_mb, arch, prices
    )
    apigw = prices.api_gateway_rest_usd_per_million_requests / 1e6 if api_gateway else 0.0
    apigw_usd = requests_per_million * apigw
    return {
        "lambda": float(lambda_usd),
        "api_gateway": float(apigw_usd),
        "total": float(lambda_usd + apigw_usd),
    }
