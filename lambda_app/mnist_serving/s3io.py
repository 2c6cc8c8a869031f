"""Read one S3 object within a size cap and the invocation's time budget.

The client is boto3's standard one: region, credentials and endpoint come from the usual
configuration chain, so ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` point it at a local S3
(moto) with no endpoint code here. S3 failures are mapped to the typed errors of
:mod:`mnist_serving.errors`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
)

from mnist_serving.budget import Budget
from mnist_serving.errors import (
    DeadlineExceeded,
    Forbidden,
    NotFound,
    ObjectTooLarge,
    UpstreamError,
    UpstreamUnavailable,
)

LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 3
"""Standard retry mode, 3 attempts in all: rides out a throttle or a reset, fails fast after."""

MIN_CALL_MS = 1000
"""Time an S3 call needs to be worth starting; with less left the request answers 504."""

CHUNK_BYTES = 1 << 20

CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    user_agent_extra="mnist-lambda",
)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden", "403"})


@functools.cache
def get_client() -> Any:
    """The S3 client, created once per execution environment and reused across invocations."""
    return boto3.session.Session().client("s3", config=CLIENT_CONFIG)


def drop_client() -> None:
    """Close the S3 client's connections and forget it (the next :func:`get_client` makes a new
    one: fresh connections, credentials resolved again)."""
    if get_client.cache_info().currsize:
        get_client().close()
        get_client.cache_clear()


def fetch_object(client: Any, bucket: str, key: str, *, max_bytes: int, budget: Budget) -> bytes:
    """Return the bytes of ``s3://bucket/key``; its size is checked with HEAD before the GET."""
    where = f"s3://{bucket}/{key}"
    budget.require(MIN_CALL_MS, "read the object from S3")
    with _mapped_s3_errors(where):
        head = client.head_object(Bucket=bucket, Key=key)
        size = int(head.get("ContentLength") or 0)
        if size > max_bytes:
            raise ObjectTooLarge(
                f"{where} is {size} bytes; the limit is {max_bytes} bytes (MAX_OBJECT_BYTES)"
            )
        budget.require(MIN_CALL_MS, "download the object from S3")
        response = client.get_object(Bucket=bucket, Key=key)
        length = response.get("ContentLength")
        return _read_capped(response["Body"], length, where, max_bytes, budget)


def put_object(
    client: Any, bucket: str, key: str, body: bytes, content_type: str, *, budget: Budget
) -> None:
    """Write ``body`` to ``s3://bucket/key`` (the predictions of an ``output_key`` request)."""
    where = f"s3://{bucket}/{key}"
    budget.require(MIN_CALL_MS, "write the predictions to S3")
    with _mapped_s3_errors(where):
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _read_capped(
    body: Any, length: int | None, where: str, max_bytes: int, budget: Budget
) -> bytes:
    """Read a streaming body in chunks, stopping at ``max_bytes`` or when the budget runs out.

    With a known length, reading stops at it (botocore checks a short body and raises).
    """
    if length is not None and length > max_bytes:
        raise ObjectTooLarge(f"{where} grew over {max_bytes} bytes since it was checked")
    data = bytearray()
    try:
        while True:
            want = CHUNK_BYTES if length is None else min(CHUNK_BYTES, length - len(data))
            if want <= 0:
                break
            _limit_socket_timeout(body, budget)
            chunk = body.read(want)
            if not chunk:
                break
            data += chunk
            if len(data) > max_bytes:
                raise ObjectTooLarge(f"{where} grew over {max_bytes} bytes while downloading")
            if budget.left_ms() <= 0:
                raise DeadlineExceeded(f"ran out of time downloading {where}")
    finally:
        body.close()
    return bytes(data)


def _limit_socket_timeout(body: Any, budget: Budget) -> None:
    """Let no single read wait longer than the time left (nor the configured read timeout)."""
    seconds = min(READ_TIMEOUT_S, max(budget.left_ms(), 100.0) / 1000)
    with suppress(AttributeError, TypeError):  # the raw stream is not a socket (stubbed body)
        body.set_socket_timeout(seconds)


@contextmanager
def _mapped_s3_errors(where: str) -> Iterator[None]:
    """Translate botocore exceptions into the endpoint's typed errors."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error") or {}
        code = _safe_code(error.get("Code"))
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in _NOT_FOUND_CODES:
            raise NotFound(f"{where} not found (no such key, or no such bucket)") from None
        if code in _DENIED_CODES:
            raise Forbidden(f"S3 denied access to {where}") from None
        LOGGER.warning("unexpected S3 error", extra={"s3_code": code, "s3_status": status})
        answer = f"{code or 'an error'} (HTTP {status})"
        raise UpstreamError(f"S3 answered {answer} for {where}") from None
    except ReadTimeoutError:
        raise DeadlineExceeded(f"S3 did not answer in time for {where}") from None
    except (ConnectionError, HTTPClientError, IncompleteReadError) as exc:
        LOGGER.warning("S3 unreachable", extra={"error_type": type(exc).__name__})
        raise UpstreamUnavailable("S3 could not be reached; try again later") from None
    except BotoCoreError as exc:
        # Anything else from botocore (credentials, bad configuration) is our fault: a 500.
        raise RuntimeError(f"S3 client failure: {type(exc).__name__}") from exc


def _safe_code(value: Any) -> str:
    """An S3 error code, reduced to characters that are safe to echo back."""
    return re.sub(r"[^A-Za-z0-9.]", "", str(value or ""))[:64]
