"""The REST API (payload format 1.0) Lambda proxy event API Gateway makes of a request."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from werkzeug.wrappers import Request

from mnist_lambda.local_stack import procs
from mnist_lambda.template.reader import ACCOUNT_ID, Route

_TEXT_SUBTYPE = re.compile(  # media subtypes API Gateway passes as text (anything else: base64)
    r"json|xml|javascript|x-www-form-urlencoded|graphql|(x-)?yaml|csv|html|x-ndjson|.*\+(json|xml)"
)
_DROP_REQUEST_HEADERS = {  # request headers API Gateway does not pass to the integration
    "connection",
    "keep-alive",
    "transfer-encoding",
    "expect",
    "te",
    "upgrade",
    "proxy-connection",
}
_IDENTITY_UNSET = (
    "cognitoIdentityPoolId",
    "accountId",
    "cognitoIdentityId",
    "caller",
    "principalOrgId",
    "accessKey",
    "cognitoAuthenticationType",
    "cognitoAuthenticationProvider",
    "userArn",
    "user",
)


def local_api_id(logical_id: str) -> str:
    """The stack's stable id for an API (10 characters, lower case and digits, as API
    Gateway's): in each event's ``apiId`` and each method ARN."""
    return hashlib.sha1(logical_id.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RequestIds:
    """The ids API Gateway gives a request (``x-amzn-RequestId``, ``x-amz-apigw-id``)."""

    request_id: str
    apigw_id: str  # the event's extendedRequestId

    @classmethod
    def new(cls) -> RequestIds:
        return cls(str(uuid.uuid4()), base64.b64encode(os.urandom(12), b"-_").decode())


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def text_body(body: bytes, content_type: str | None, binary_types: tuple[str, ...]) -> str | None:
    """The body as the event's text, or None when it goes base64 (binary type, not UTF-8)."""
    media = media_type(content_type)
    for p in (t.replace("~1", "/").lower() for t in binary_types):
        if p in ("*/*", media) or (p.endswith("/*") and media.startswith(p[:-1])):
            return None
    main, _, sub = media.partition("/")
    if media and main != "text" and _TEXT_SUBTYPE.fullmatch(sub) is None:
        return None
    try:  # no type: text if it decodes as UTF-8
        return body.decode()
    except UnicodeDecodeError:
        return None


def build_event(
    request: Request,
    route: Route,
    path_params: dict[str, str],
    body: bytes,
    ids: RequestIds,
    *,
    port: int,
    binary_media_types: tuple[str, ...],
) -> dict[str, Any]:
    """The proxy event for ``request`` (its ``body`` read) on ``route``, served on ``port``."""
    raw_path = urlsplit(request.environ["RAW_URI"]).path
    path = unquote(raw_path)
    if path.startswith(f"/{route.stage}/"):
        path = path[len(route.stage) + 1 :]
    headers = _headers(request, port)
    query = dict(request.args.lists())
    text = text_body(body, request.content_type, binary_media_types)
    b64 = bool(body) and text is None
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": {k: v[-1] for k, v in headers.items()} or None,
        "multiValueHeaders": headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": _request_context(request, route, raw_path, ids, port),
        "body": base64.b64encode(body).decode() if b64 else text or None,
        "isBase64Encoded": b64,
    }


def _headers(request: Request, port: int) -> dict[str, list[str]]:
    """The client's headers (its names, case and repeats; hop-by-hop ones dropped), then those
    API Gateway adds unless the client sent them."""
    multi: dict[str, list[str]] = {}
    names: dict[str, str] = {}  # lower case -> the first spelling seen
    for name, value in request.environ["apigw.headers"]:
        if name.lower() not in _DROP_REQUEST_HEADERS:
            multi.setdefault(names.setdefault(name.lower(), name), []).append(value)
    added = {
        "X-Forwarded-For": request.remote_addr or "",
        "X-Forwarded-Port": str(port),
        "X-Forwarded-Proto": "http",
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}",
    }
    return multi | {k: [v] for k, v in added.items() if k.lower() not in names}


def _request_context(
    request: Request, route: Route, raw_path: str, ids: RequestIds, port: int
) -> dict[str, Any]:
    """The event's ``requestContext``: ids, times, the stage, the caller's identity."""
    now = time.time()
    host = request.headers.get("Host", f"{procs.HOST}:{port}")
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY_UNSET)
    identity |= {
        "sourceIp": request.remote_addr or "",
        "userAgent": request.headers.get("User-Agent"),
        **request.environ.get("apigw.identity", {}),  # the caller the method's auth found
    }
    return {
        "resourceId": hashlib.sha1(route.path.encode()).hexdigest()[:6],
        "resourcePath": route.path,
        "httpMethod": request.method,
        "extendedRequestId": ids.apigw_id,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "path": raw_path,
        "accountId": ACCOUNT_ID,
        "protocol": request.environ["SERVER_PROTOCOL"],
        "stage": route.stage,
        "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
        "requestTimeEpoch": int(now * 1000),
        "requestId": ids.request_id,
        "identity": identity,
        "domainName": host,
        "apiId": local_api_id(route.api),
    }
