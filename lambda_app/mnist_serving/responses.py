"""API Gateway proxy responses: the 200 prediction list and the one error shape.

Every error becomes ``{"error": {"code", "message"}, "request_id"}`` in :func:`error_response`,
the single place that maps exceptions to HTTP statuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mnist_serving.errors import AppError

JSON_CONTENT_TYPE = "application/json"


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict:
    """A REST (v1) proxy integration response with a compact JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})},
        "body": json.dumps(body, separators=(",", ":"), ensure_ascii=True),
        "isBase64Encoded": False,
    }


def error_response(
    exc: BaseException, request_id: str, headers: Mapping[str, str] | None = None
) -> dict:
    """Map an exception to its response: an AppError keeps its status, code and message;
    anything else is a 500 with a generic message (details belong in the logs only)."""
    error = exc if isinstance(exc, AppError) else AppError()
    body = {"error": {"code": error.code, "message": error.message}, "request_id": request_id}
    return json_response(error.status, body, headers)


def server_timing(timings_ms: Mapping[str, float]) -> str:
    """A ``Server-Timing`` header value: ``s3;dur=12.3, decode;dur=1.0, predict;dur=4.5``."""
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in timings_ms.items())
