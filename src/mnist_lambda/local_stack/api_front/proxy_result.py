"""The function's Lambda proxy result mapped back to HTTP, as API Gateway does: anything it
would refuse is a :class:`BadGateway` (its 502)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from werkzeug.wrappers import Response

from mnist_lambda.local_stack.invocation import InvokeResult

_PROXY_RESULT_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
_REMAP_RESPONSE_HEADERS = {  # response headers API Gateway renames to x-amzn-Remapped-<name>
    "authorization",
    "connection",
    "content-md5",
    "date",
    "expect",
    "host",
    "max-forwards",
    "proxy-authenticate",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "www-authenticate",
}
_DROP_RESPONSE_HEADERS = {"content-length", "keep-alive"}  # and those it drops
_MALFORMED = "malformed Lambda proxy response"


class BadGateway(Exception):
    """The integration's answer cannot be turned into an HTTP response (-> 502)."""


def map_proxy_result(result: InvokeResult) -> Response:
    """Turn the function's proxy result into an HTTP reply; raise BadGateway when AWS would."""
    payload = _proxy_payload(result)
    status = payload.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadGateway(f"{_MALFORMED}: statusCode {status!r}")
    if (body := payload.get("body")) is not None and not isinstance(body, str):
        raise BadGateway(f"{_MALFORMED}: body is not a string")
    try:
        b64 = payload.get("isBase64Encoded")
        data = base64.b64decode(body or "", validate=True) if b64 else (body or "").encode()
    except (binascii.Error, ValueError) as exc:
        raise BadGateway(f"{_MALFORMED}: bad base64 body") from exc
    headers = _response_headers(payload)
    if "content-type" not in {k.lower() for k, _ in headers}:
        headers.append(("Content-Type", "application/json"))
    return Response(data, status, headers)


def _proxy_payload(result: InvokeResult) -> dict[str, Any]:
    """The proxy result's JSON object; BadGateway for a failure, an error or no such object."""
    if result.failure:
        raise BadGateway(result.failure)
    if result.too_large:
        raise BadGateway("function response exceeds Lambda's 6 MB payload limit")
    if result.function_error:
        raise BadGateway(f"function error ({result.function_error}): {result.body[:500]!r}")
    if result.status != 200:
        raise BadGateway(f"emulator answered HTTP {result.status}: {result.body[:500]!r}")
    try:
        payload: Any = json.loads(result.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadGateway(f"function response is not JSON: {result.body[:200]!r}") from exc
    if isinstance(payload, dict) and "errorType" in payload and "statusCode" not in payload:
        raise BadGateway(f"function error {payload['errorType']}: {payload.get('errorMessage')}")
    if not isinstance(payload, dict):
        raise BadGateway(f"{_MALFORMED}: not a JSON object")
    if extra := set(payload) - _PROXY_RESULT_KEYS:
        raise BadGateway(f"{_MALFORMED}: unexpected keys {sorted(extra)}")
    return payload


def _response_headers(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """``multiValueHeaders`` and ``headers`` (the former win), remapped or dropped as API
    Gateway does."""
    multi, single = payload.get("multiValueHeaders") or {}, payload.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise BadGateway(f"{_MALFORMED}: headers must be objects")
    if not all(isinstance(values, list) for values in multi.values()):
        raise BadGateway(f"{_MALFORMED}: multiValueHeaders values")
    known = {str(k).lower() for k in multi}
    merged = [*multi.items(), *((k, [v]) for k, v in single.items() if k.lower() not in known)]
    headers: list[tuple[str, str]] = []
    for name, values in merged:
        low, texts = str(name).lower(), [_header_value(v) for v in values]
        if low not in _DROP_RESPONSE_HEADERS:
            out = f"x-amzn-Remapped-{name}" if low in _REMAP_RESPONSE_HEADERS else str(name)
            headers.extend((out, text) for text in texts)
    return headers


def _header_value(value: Any) -> str:
    if isinstance(value, dict | list):
        raise BadGateway(f"{_MALFORMED}: header value is not a scalar")
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if "\r" in text or "\n" in text:
        raise BadGateway(f"{_MALFORMED}: newline in a header value")
    return text
