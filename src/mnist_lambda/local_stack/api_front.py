"""An API Gateway REST API in front of the emulated function (Lambda proxy integration).

Each HTTP request becomes a REST API (payload v1.0) proxy event, is invoked through a
:class:`~mnist_lambda.local_stack.lambda_emulator.FunctionPool`, and the proxy result is mapped
back. API Gateway's own answers are reproduced:

=====================================================  ====  ====================================
condition                                              code  body
=====================================================  ====  ====================================
no such resource/method (REST APIs)                    403   Missing Authentication Token
body fails the method's request validator (OpenAPI)    400   Invalid request body
request body over 10 MB (checked before reading)       413   Request Too Long
event over Lambda's 6 MB invocation limit              413   Request Too Long
no answer within the integration timeout (29 s)        504   Endpoint request timed out
function error, malformed proxy result, response over
Lambda's 6 MB, emulator dead or refusing connections   502   Internal server error
=====================================================  ====  ====================================

Routes are served as ``/<stage>/<path>`` (as on ``execute-api``) and as ``/<path>``.

Request validation follows the API's OpenAPI definition (``DefinitionBody``, e.g. an
``AWS::Include`` of ``openapi/predict.yaml``) as API Gateway applies it: when the method's
``x-amazon-apigateway-request-validator`` (or the document's default) has
``validateRequestBody``, the body must be JSON matching the ``requestBody`` schema for the
request's Content-Type (``application/json`` when there is none; a type without a schema is not
validated), checked with JSON Schema draft 4 before the function is invoked.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.cfn_template import ACCOUNT_ID, Route, StackSpec
from mnist_lambda.local_stack.lambda_emulator import (
    LAMBDA_REQUEST_LIMIT,
    FunctionPool,
    GatewayTimeout,
    InvokeResult,
)

log = logging.getLogger("mnist_lambda.local_stack.api")

REQUEST_LIMIT = 10 * 1024 * 1024  # API Gateway REST API payload quota (10 MB)
INTEGRATION_TIMEOUT_S = 29.0  # API Gateway's default (and until 2024 maximum) timeout
DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop at most this much of a refused body

_PROXY_RESULT_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
_TEXT_SUBTYPES = {
    "json",
    "xml",
    "javascript",
    "x-www-form-urlencoded",
    "graphql",
    "yaml",
    "x-yaml",
    "csv",
    "html",
    "x-ndjson",
}
# request headers API Gateway does not pass to the integration
_DROP_REQUEST_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "expect",
    "te",
    "upgrade",
    "proxy-connection",
}
# response headers API Gateway renames to x-amzn-Remapped-<name>, or drops
_REMAP_RESPONSE_HEADERS = {
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
_DROP_RESPONSE_HEADERS = {"content-length", "keep-alive"}

_ERROR_TYPES = {
    400: "BadRequestException",
    403: "MissingAuthenticationTokenException",
    502: "InternalServerErrorException",
}


class BodyValidator:
    """API Gateway's request body validation for one method, from its OpenAPI operation."""

    def __init__(self, definition: Mapping[str, Any], operation: Mapping[str, Any]) -> None:
        validators = definition.get("x-amazon-apigateway-request-validators") or {}
        name = operation.get(
            "x-amazon-apigateway-request-validator",
            definition.get("x-amazon-apigateway-request-validator"),
        )
        settings = (validators.get(name) or {}) if name else {}
        self.enabled = bool(settings.get("validateRequestBody"))
        content = (operation.get("requestBody") or {}).get("content") or {}
        root = {k: v for k, v in definition.items() if k in ("components", "definitions")}
        self.schemas: dict[str, Any] = {}
        for media, entry in content.items():
            schema = (entry or {}).get("schema")
            if isinstance(schema, dict):
                self.schemas[media.lower()] = jsonschema.Draft4Validator({**root, **schema})

    def check(self, content_type: str | None, body: bytes) -> bool:
        """Whether API Gateway would let this body through to the integration."""
        if not self.enabled:
            return True
        validator = self.schemas.get(_media_type(content_type) or "application/json")
        if validator is None:
            return True  # no model for this content type: API Gateway does not validate
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
        try:
            return validator.is_valid(data)
        except RecursionError:
            return False


def body_validators(spec: StackSpec) -> dict[tuple[str, str, str], BodyValidator]:
    """(api, METHOD, path) -> validator, for every route whose API has an OpenAPI definition."""
    found: dict[tuple[str, str, str], BodyValidator] = {}
    for route in spec.routes:
        definition = spec.definitions.get(route.api)
        if not definition:
            continue
        item = (definition.get("paths") or {}).get(route.path) or {}
        method = "x-amazon-apigateway-any-method" if route.method == "ANY" else route.method
        operation = item.get(method.lower()) or item.get("x-amazon-apigateway-any-method")
        if isinstance(operation, dict):
            found[(route.api, route.method, route.path)] = BodyValidator(definition, operation)
    return found


class BadGateway(Exception):
    """The integration's answer cannot be turned into an HTTP response (-> 502)."""


@dataclass(frozen=True)
class Reply:
    """An HTTP response to send."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    instance: str = "-"
    note: str = ""  # for the request log line


def gateway_reply(status: int, message: str) -> Reply:
    """One of API Gateway's own JSON error responses."""
    headers = [("Content-Type", "application/json")]
    if status in _ERROR_TYPES:
        headers.append(("x-amzn-ErrorType", _ERROR_TYPES[status]))
    return Reply(status, headers, json.dumps({"message": message}).encode())


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_text(content_type: str | None, binary_media_types: tuple[str, ...] = ()) -> bool:
    """Whether a body of this Content-Type goes to the function as text (else base64)."""
    media = _media_type(content_type)
    for pattern in binary_media_types:
        pattern = pattern.replace("~1", "/").lower()
        if pattern == "*/*" or pattern == media:
            return False
        if pattern.endswith("/*") and media.startswith(pattern[:-1]):
            return False
    if not media:
        return True  # no type: text if it decodes as UTF-8
    main, _, sub = media.partition("/")
    return main == "text" or sub in _TEXT_SUBTYPES or sub.endswith(("+json", "+xml"))


def _apigw_id() -> str:
    return base64.b64encode(os.urandom(12)).decode().replace("/", "_").replace("+", "-")


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"


def map_proxy_result(result: InvokeResult) -> Reply:
    """Turn the function's proxy result into an HTTP reply; raise BadGateway when AWS would."""
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
        raise BadGateway(
            f"function error {payload.get('errorType')}: {payload.get('errorMessage')}"
        )
    if not isinstance(payload, dict):
        raise BadGateway("malformed Lambda proxy response: not a JSON object")
    extra = set(payload) - _PROXY_RESULT_KEYS
    if extra:
        raise BadGateway(f"malformed Lambda proxy response: unexpected keys {sorted(extra)}")
    status = payload.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadGateway(f"malformed Lambda proxy response: statusCode {status!r}")
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        raise BadGateway("malformed Lambda proxy response: body is not a string")
    if payload.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadGateway("malformed Lambda proxy response: bad base64 body") from exc
    else:
        data = (body or "").encode("utf-8")
    multi = payload.get("multiValueHeaders") or {}
    single = payload.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise BadGateway("malformed Lambda proxy response: headers must be objects")
    merged: dict[str, list[str]] = {}
    for name, values in multi.items():
        if not isinstance(values, list):
            raise BadGateway("malformed Lambda proxy response: multiValueHeaders values")
        merged[str(name)] = [_header_value(v) for v in values]
    for name, value in single.items():
        if str(name).lower() not in {k.lower() for k in merged}:
            merged[str(name)] = [_header_value(value)]
    headers: list[tuple[str, str]] = []
    for name, values in merged.items():
        low = name.lower()
        if low in _DROP_RESPONSE_HEADERS:
            continue
        out_name = f"x-amzn-Remapped-{name}" if low in _REMAP_RESPONSE_HEADERS else name
        headers.extend((out_name, v) for v in values)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return Reply(status, headers, data, result.instance)


def _header_value(value: Any) -> str:
    if isinstance(value, dict | list):
        raise BadGateway("malformed Lambda proxy response: header value is not a scalar")
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class ApiFront:
    """The HTTP server: routes from the template, one proxy event per request."""

    def __init__(
        self,
        spec: StackSpec,
        pools: Mapping[str, FunctionPool],
        *,
        port: int = 0,
        integration_timeout: float = INTEGRATION_TIMEOUT_S,
        request_limit: int = REQUEST_LIMIT,
    ) -> None:
        self.spec = spec
        self.pools = pools
        self.port = port
        self.integration_timeout = integration_timeout
        self.request_limit = request_limit
        self.validators = body_validators(spec)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{procs.HOST}:{self.port}"

    def route_url(self, route: Route) -> str:
        """The full URL of a route, stage included."""
        return f"{self.url}/{route.stage}{route.path}"

    def start(self) -> None:
        """Bind 127.0.0.1:port (0: a free port) and serve in a background thread."""
        handler = type("_BoundHandler", (_Handler,), {"front": self})
        self._server = _Server((procs.HOST, self.port), handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="api-front",
        )
        self._thread.start()
        log.info("API front listening on %s (stages: %s)", self.url, ", ".join(self.spec.stages))

    def stop(self) -> None:
        """Stop accepting requests and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def find_route(self, path: str, method: str) -> tuple[Route, str, dict[str, str]] | None:
        """(route, stage, path parameters) for a request path, with or without the stage."""
        candidates: list[tuple[str | None, str]] = []
        for stage in self.spec.stages:
            prefix = f"/{stage}"
            if path == prefix or path.startswith(prefix + "/"):
                candidates.append((stage, path[len(prefix) :] or "/"))
        candidates.append((None, path))
        for stage, rest in candidates:
            for route in self.spec.routes:
                if stage is not None and route.stage != stage:
                    continue
                if route.method not in (method, "ANY"):
                    continue
                params = route.match(rest)
                if params is not None:
                    return route, route.stage, params
        return None

    def build_event(
        self,
        handler: _Handler,
        route: Route,
        stage: str,
        path_params: dict[str, str],
        body: bytes,
        request_id: str,
        apigw_id: str,
    ) -> dict[str, Any]:
        """The REST API (payload format 1.0) Lambda proxy event for one request."""
        split = urlsplit(handler.path)
        raw_path = split.path
        path = unquote(raw_path)
        if path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for name, value in handler.headers.items():
            if name.lower() in _DROP_REQUEST_HEADERS:
                continue
            name = names.setdefault(name.lower(), name)
            multi.setdefault(name, []).append(value)
            headers[name] = value
        client_ip = handler.client_address[0]
        host = handler.headers.get("Host", f"{procs.HOST}:{self.port}")
        for name, value in (
            ("X-Forwarded-For", client_ip),
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
            ("X-Amzn-Trace-Id", _trace_id()),
        ):
            if name.lower() not in names:
                headers[name], multi[name] = value, [value]
        query = parse_qsl(split.query, keep_blank_values=True)
        mquery: dict[str, list[str]] = {}
        for key, value in query:
            mquery.setdefault(key, []).append(value)
        content_type = handler.headers.get("Content-Type")
        if not body:
            text_body, b64 = None, False
        elif is_text(content_type, self.spec.binary_media_types):
            try:
                text_body, b64 = body.decode("utf-8"), False
            except UnicodeDecodeError:
                text_body, b64 = base64.b64encode(body).decode(), True
        else:
            text_body, b64 = base64.b64encode(body).decode(), True
        now = time.time()
        api_id = hashlib.sha1(route.api.encode()).hexdigest()[:10]
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": handler.command,
            "headers": headers or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": {k: v[-1] for k, v in mquery.items()} or None,
            "multiValueQueryStringParameters": mquery or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": hashlib.sha1(route.path.encode()).hexdigest()[:6],
                "resourcePath": route.path,
                "httpMethod": handler.command,
                "extendedRequestId": apigw_id,
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "path": raw_path,
                "accountId": ACCOUNT_ID,
                "protocol": handler.request_version,
                "stage": stage,
                "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": None,
                    "cognitoIdentityId": None,
                    "caller": None,
                    "sourceIp": client_ip,
                    "principalOrgId": None,
                    "accessKey": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": None,
                    "userAgent": handler.headers.get("User-Agent"),
                    "user": None,
                },
                "domainName": host,
                "apiId": api_id,
            },
            "body": text_body,
            "isBase64Encoded": b64,
        }

    def dispatch(self, handler: _Handler, body: bytes, request_id: str, apigw_id: str) -> Reply:
        """Route, invoke and map one request whose body has been read."""
        path = unquote(urlsplit(handler.path).path)
        found = self.find_route(path, handler.command)
        if found is None:
            return gateway_reply(403, "Missing Authentication Token")
        route, stage, params = found
        validator = self.validators.get((route.api, route.method, route.path))
        content_type = handler.headers.get("Content-Type")
        if validator is not None and not validator.check(content_type, body):
            return gateway_reply(400, "Invalid request body")
        deadline = time.monotonic() + self.integration_timeout
        event = self.build_event(handler, route, stage, params, body, request_id, apigw_id)
        payload = json.dumps(event).encode()
        if len(payload) > LAMBDA_REQUEST_LIMIT:
            log.warning(
                "%s: event of %d bytes exceeds Lambda's 6 MB invocation limit",
                request_id,
                len(payload),
            )
            return gateway_reply(413, "Request Too Long")
        pool = self.pools[route.function]
        try:
            result = pool.invoke(payload, deadline)
        except GatewayTimeout as exc:
            log.warning(
                "%s: integration timeout after %.1f s (%s)",
                request_id,
                self.integration_timeout,
                exc,
            )
            return gateway_reply(504, "Endpoint request timed out")
        try:
            reply = map_proxy_result(result)
        except BadGateway as exc:
            log.warning("%s: 502 from %s: %s", request_id, result.instance, exc)
            reply = gateway_reply(502, "Internal server error")
        reply.headers.extend(_emulator_headers(result))
        note = f" (cold start, init {result.init_ms:.1f}ms)" if result.init_ms is not None else ""
        return dataclasses.replace(reply, instance=result.instance, note=note)


def _emulator_headers(result: InvokeResult) -> list[tuple[str, str]]:
    """The emulator's own numbers (not API Gateway headers): instance, cold start, durations."""
    headers = [
        ("X-Lambda-Emulator-Instance", result.instance),
        ("X-Lambda-Emulator-Cold-Start", "true" if result.init_ms is not None else "false"),
    ]
    if result.init_ms is not None:
        headers.append(("X-Lambda-Emulator-Init-Duration-Ms", f"{result.init_ms:.2f}"))
    if result.duration_ms is not None:
        headers.append(("X-Lambda-Emulator-Duration-Ms", f"{result.duration_ms:.2f}"))
    return headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this
    front: ApiFront

    def parse_request(self) -> bool:
        self._continue_sent = True  # no "Expect: 100-continue": the client sends the body
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        # refuse an oversize body before the client sends it
        if self._declared_length() > self.front.request_limit:
            self._continue_sent = False
            return True
        self._continue_sent = True
        return super().handle_expect_100()

    def _declared_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return -1

    def _read_body(self) -> bytes | None:
        """The request body, or None if it is over the limit (nothing more read then)."""
        limit = self.front.request_limit
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limit:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self._declared_length()
        if length > limit:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _drain(self) -> None:
        """Read and drop a refused body so the client sees the reply, then close."""
        self.close_connection = True
        if not self._continue_sent:
            return  # the client is waiting for 100-continue: it will not send the body
        remaining = min(self._declared_length(), DRAIN_LIMIT)
        with contextlib.suppress(OSError):
            self.connection.settimeout(2.0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)

    def _reply(self, request_id: str, apigw_id: str) -> tuple[Reply, bool]:
        """The reply, and whether the request body was refused (left unread)."""
        if self._declared_length() < 0:
            return gateway_reply(400, "Bad Request"), True
        try:
            body = self._read_body()
        except ValueError:  # broken chunked encoding
            return gateway_reply(400, "Bad Request"), True
        if body is None:
            return gateway_reply(413, "Request Too Long"), True
        try:
            return self.front.dispatch(self, body, request_id, apigw_id), False
        except Exception:
            log.exception("%s: front failure", request_id)
            return gateway_reply(500, "Internal server error"), False

    def _handle(self) -> None:
        started = time.monotonic()
        request_id, apigw_id = str(uuid.uuid4()), _apigw_id()
        reply, refused = self._reply(request_id, apigw_id)
        if refused:
            self.close_connection = True
        self._send(reply, request_id, apigw_id)
        if refused:
            self._drain()
        duration_ms = (time.monotonic() - started) * 1000
        log.info("%s %s %d %.1fms %s%s", self.command, self.path, reply.status, duration_ms,
                 reply.instance, reply.note)  # fmt: skip

    def _send(self, reply: Reply, request_id: str, apigw_id: str) -> None:
        try:
            self.send_response_only(reply.status)
            self.send_header("Date", formatdate(usegmt=True))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("x-amzn-RequestId", request_id)
            self.send_header("x-amz-apigw-id", apigw_id)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
