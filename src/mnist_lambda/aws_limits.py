"""AWS platform limits, named once. What *our* function is configured with (timeout, memory,
object size, throttling) is not here: it is read from the SAM template
(:mod:`mnist_lambda.template.reader`).

Sources: the Lambda quotas page (payloads, ``/tmp``, memory), "Configuring Lambda function
memory" (CPU in proportion to memory, one full vCPU at 1,769 MB), and the API Gateway quotas page
(REST API payload and integration timeout).
"""

from __future__ import annotations

MIB = 1024 * 1024

API_GATEWAY_TIMEOUT_S = 29.0
"""API Gateway REST API integration timeout (the default, and the maximum until 2024)."""

API_GATEWAY_PAYLOAD_BYTES = 10 * MIB
"""Largest request body a REST API accepts (413 ``Request Too Long`` above)."""

API_GATEWAY_BURST_LIMIT = 5000
"""Account-level burst, what a stage throttle with a rate but no burst limit gets."""

LAMBDA_REQUEST_BYTES = 6 * MIB
"""Synchronous invocation payload, the proxy event (6,291,456 bytes)."""

LAMBDA_RESPONSE_BYTES = 6 * MIB + 100
"""Synchronous invocation response (6,291,556 bytes); more is a function error (502)."""

MB_PER_VCPU = 1769
"""Memory at which a function gets one full vCPU; CPU share is ``memory / 1769`` vCPUs."""

EPHEMERAL_STORAGE_MB = 512
"""``/tmp`` size when the template sets no ``EphemeralStorage``."""

DEFAULT_TIMEOUT_S = 3
"""Function ``Timeout`` when the template sets none (SAM's default)."""

DEFAULT_MEMORY_MB = 128
"""Function ``MemorySize`` when the template sets none (SAM's default)."""

DEFAULT_ARCHITECTURE = "x86_64"
"""Function ``Architectures`` when the template sets none."""

MEMORY_SIZE_RANGE_MB = (128, 10240)
"""The ``MemorySize`` values Lambda accepts, in MB (inclusive)."""


def check_memory_size(memory_mb: int) -> int:
    """``memory_mb`` if Lambda accepts it as ``MemorySize``, else a ValueError saying the range."""
    low, high = MEMORY_SIZE_RANGE_MB
    if not low <= int(memory_mb) <= high:
        raise ValueError(f"MemorySize must be {low}-{high} MB, not {memory_mb}")
    return int(memory_mb)


def vcpu_share(memory_mb: int, cores: int) -> float:
    """Lambda's CPU share for ``memory_mb``, in vCPUs, capped at ``cores``."""
    return min(memory_mb / MB_PER_VCPU, float(cores))
