"""An API Gateway REST API in front of the emulated function (Lambda proxy integration).

A werkzeug WSGI app: each request becomes a REST API (payload v1.0) proxy event for a
:class:`~.lambda_emulator.FunctionPool`, and the proxy result is mapped back. API Gateway's own
answers, their order, the throttle and request validation: see docs/local-stack.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import jsonschema
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from mnist_lambda.aws_limits import (
    API_GATEWAY_PAYLOAD_BYTES,
    API_GATEWAY_TIMEOUT_S,
    LAMBDA_REQUEST_BYTES,
)
from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.lambda_emulator import (
    FunctionPool,
    FunctionThrottled,
    GatewayTimeout,
    InvokeResult,
)
from mnist_lambda.template.reader import ACCOUNT_ID, Route, StackSpec, Throttle

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("mnist_lambda.local_stack.api")

_PROXY_RESULT_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
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
_VALIDATOR = "x-amazon-apigateway-request-validator"
_ERROR_TYPES = {
    400: "BadRequestException",
    403: "MissingAuthenticationTokenException",
    429: "TooManyRequestsException",
    500: "InternalServerErrorException",
    502: "InternalServerErrorException",
}


class BodyValidator:
    """API Gateway's request body validation for one method, from its OpenAPI operation."""

    def __init__(self, definition: Mapping[str, Any], operation: Mapping[str, Any]) -> None:
        validators = definition.get(f"{_VALIDATOR}s") or {}
        name = operation.get(_VALIDATOR, definition.get(_VALIDATOR))
        settings = (validators.get(name) or {}) if name else {}
        self.enabled = bool(settings.get("validateRequestBody"))
        content = (operation.get("requestBody") or {}).get("content") or {}
        root = {k: v for k, v in definition.items() if k in ("components", "definitions")}
        self.schemas: dict[str, Any] = {}
        for media, entry in content.items():
            if isinstance(schema := (entry or {}).get("schema"), dict):
                self.schemas[media.lower()] = jsonschema.Draft4Validator({**root, **schema})

    def check(self, content_type: str | None, body: bytes) -> bool:
        """Whether API Gateway would let this body through to the integration."""
        validator = self.schemas.get(_media_type(content_type) or "application/json")
        if not self.enabled or validator is None:
            return True  # no model for this content type: API Gateway does not validate
        try:
            return validator.is_valid(json.loads(body.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False


def body_validators(spec: StackSpec) -> dict[tuple[str, str, str], BodyValidator]:
    """(api, METHOD, path) -> validator, for every route whose API has an OpenAPI definition."""
    found: dict[tuple[str, str, str], BodyValidator] = {}
    for route in spec.routes:
        definition = spec.definitions.get(route.api) or {}
        item = (definition.get("paths") or {}).get(route.path) or {}
        method = "x-amazon-apigateway-any-method" if route.method == "ANY" else route.method
        operation = item.get(method.lower()) or item.get("x-amazon-apigateway-any-method")
        if isinstance(operation, dict):
            found[(route.api, route.method, route.path)] = BodyValidator(definition, operation)
    return found


class TokenBucket:
    """A stage throttle as API Gateway applies it: ``burst`` tokens, refilled at ``rate``/s."""

    def __init__(self, throttle: Throttle) -> None:
        self.rate, self.capacity = throttle.rate_limit, float(throttle.burst_limit)
        self.tokens, self.stamp = self.capacity, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class BadGateway(Exception):
    """The integration's answer cannot be turned into an HTTP response (-> 502)."""


def gateway_reply(status: int, message: str) -> Response:
    """One of API Gateway's own JSON error responses."""
    headers = [("Content-Type", "application/json")]
    if status in _ERROR_TYPES:
        headers.append(("x-amzn-ErrorType", _ERROR_TYPES[status]))
    return Response(json.dumps({"message": message}), status, headers)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def text_body(body: bytes, content_type: str | None, binary_types: tuple[str, ...]) -> str | None:
    """The body as the event's text, or None when it goes base64 (binary type, not UTF-8)."""
    media = _media_type(content_type)
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


def map_proxy_result(result: InvokeResult) -> Response:
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
        raise BadGateway(f"function error {payload['errorType']}: {payload.get('errorMessage')}")
    if not isinstance(payload, dict):
        raise BadGateway("malformed Lambda proxy response: not a JSON object")
    if extra := set(payload) - _PROXY_RESULT_KEYS:
        raise BadGateway(f"malformed Lambda proxy response: unexpected keys {sorted(extra)}")
    status = payload.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadGateway(f"malformed Lambda proxy response: statusCode {status!r}")
    if (body := payload.get("body")) is not None and not isinstance(body, str):
        raise BadGateway("malformed Lambda proxy response: body is not a string")
    try:
        b64 = payload.get("isBase64Encoded")
        data = base64.b64decode(body or "", validate=True) if b64 else (body or "").encode()
    except (binascii.Error, ValueError) as exc:
        raise BadGateway("malformed Lambda proxy response: bad base64 body") from exc
    multi, single = payload.get("multiValueHeaders") or {}, payload.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise BadGateway("malformed Lambda proxy response: headers must be objects")
    if not all(isinstance(values, list) for values in multi.values()):
        raise BadGateway("malformed Lambda proxy response: multiValueHeaders values")
    known = {str(k).lower() for k in multi}  # multiValueHeaders win, as in API Gateway
    merged = [*multi.items(), *((k, [v]) for k, v in single.items() if k.lower() not in known)]
    headers: list[tuple[str, str]] = []
    for name, values in merged:
        low, texts = str(name).lower(), [_header_value(v) for v in values]
        if low not in _DROP_RESPONSE_HEADERS:
            out = f"x-amzn-Remapped-{name}" if low in _REMAP_RESPONSE_HEADERS else str(name)
            headers.extend((out, text) for text in texts)
    if "content-type" not in {k.lower() for k, _ in headers}:
        headers.append(("Content-Type", "application/json"))
    return Response(data, status, headers)


def _header_value(value: Any) -> str:
    if isinstance(value, dict | list):
        raise BadGateway("malformed Lambda proxy response: header value is not a scalar")
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if "\r" in text or "\n" in text:
        raise BadGateway("malformed Lambda proxy response: newline in a header value")
    return text


def _declared_length(value: str | None) -> int:
    """A Content-Length header as a number: 0 when absent, -1 when malformed."""
    value = (value or "0").strip()
    return int(value) if value.isascii() and value.isdigit() else -1


class _Handler(WSGIRequestHandler):
    timeout = 120  # a silent client is dropped after this

    def handle_expect_100(self) -> bool:
        # werkzeug's run_wsgi sends the "100 Continue"; none if the size is refused (413)
        declared = _declared_length(self.headers.get("Content-Length"))
        if not 0 <= declared <= API_GATEWAY_PAYLOAD_BYTES:
            del self.headers["Expect"]
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)  # no Server header, as on API Gateway
        self.send_header("Date", self.date_time_string())

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        environ["apigw.headers"] = self.headers.items()  # the client's names, case and repeats
        return environ

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), message % args)


class ApiFront:
    """The HTTP server: routes from the template, one proxy event per request."""

    def __init__(
        self,
        spec: StackSpec,
        pools: Mapping[str, FunctionPool],
        *,
        port: int = 0,
        integration_timeout: float = API_GATEWAY_TIMEOUT_S,
    ) -> None:
        self.pools, self.port, self.integration_timeout = pools, port, integration_timeout
        self.configure(spec)
        self._server: BaseWSGIServer | None = None

    def configure(self, spec: StackSpec) -> None:
        """Routes, validation and stage throttles of ``spec`` (at start and on a redeploy)."""
        self.spec, self.validators = spec, body_validators(spec)
        self.buckets = {api: TokenBucket(t) for api, t in spec.throttling.items()}

    @property
    def url(self) -> str:
        return f"http://{procs.HOST}:{self.port}"

    def start(self) -> None:
        """Bind 127.0.0.1:port (0: a free port) and serve in a background thread."""
        try:
            server = make_server(
                procs.HOST, self.port, self, threaded=True, request_handler=_Handler
            )
        except SystemExit as exc:  # werkzeug exits when it cannot bind
            raise OSError(f"API front cannot listen on {procs.HOST}:{self.port}") from exc
        self._server, self.port = server, server.port
        threading.Thread(
            target=server.serve_forever, args=(0.2,), daemon=True, name="api-front"
        ).start()
        log.info("API front listening on %s (stages: %s)", self.url, ", ".join(self.spec.stages))

    def stop(self) -> None:
        """Stop accepting requests and free the port."""
        if self._server is not None:
            self._server.shutdown()  # returns once serve_forever has
            self._server.server_close()
            self._server = None

    def find_route(self, path: str, method: str) -> tuple[Route, dict[str, str]] | None:
        """(route, path parameters) for a request path, with or without the stage."""
        stages = [s for s in self.spec.stages if path == f"/{s}" or path.startswith(f"/{s}/")]
        for stage in [*stages, None]:
            rest = path if stage is None else path[len(stage) + 1 :] or "/"
            for route in self.spec.routes:
                wanted = stage in (None, route.stage) and route.method in (method, "ANY")
                if wanted and (params := route.match(rest)) is not None:
                    return route, params
        return None

    def build_event(
        self,
        request: Request,
        route: Route,
        path_params: dict[str, str],
        body: bytes,
        request_id: str,
        apigw_id: str,
    ) -> dict[str, Any]:
        """The REST API (payload format 1.0) Lambda proxy event for one request."""
        raw_path, stage = urlsplit(request.environ["RAW_URI"]).path, route.stage
        path = unquote(raw_path)
        if path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        multi: dict[str, list[str]] = {}
        names: dict[str, str] = {}  # lower case -> the first spelling seen
        for name, value in request.environ["apigw.headers"]:
            if name.lower() not in _DROP_REQUEST_HEADERS:
                multi.setdefault(names.setdefault(name.lower(), name), []).append(value)
        client_ip = request.remote_addr or ""
        trace = f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"
        added = {
            "X-Forwarded-For": client_ip,
            "X-Forwarded-Port": str(self.port),
            "X-Forwarded-Proto": "http",
            "X-Amzn-Trace-Id": trace,
        }
        multi |= {k: [v] for k, v in added.items() if k.lower() not in names}
        mquery = dict(request.args.lists())
        text = text_body(body, request.content_type, self.spec.binary_media_types)
        b64 = bool(body) and text is None
        now = time.time()
        host = request.headers.get("Host", f"{procs.HOST}:{self.port}")
        identity: dict[str, Any] = dict.fromkeys(_IDENTITY_UNSET)
        identity |= {"sourceIp": client_ip, "userAgent": request.headers.get("User-Agent")}
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": request.method,
            "headers": {k: v[-1] for k, v in multi.items()} or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": {k: v[-1] for k, v in mquery.items()} or None,
            "multiValueQueryStringParameters": mquery or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": hashlib.sha1(route.path.encode()).hexdigest()[:6],
                "resourcePath": route.path,
                "httpMethod": request.method,
                "extendedRequestId": apigw_id,
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "path": raw_path,
                "accountId": ACCOUNT_ID,
                "protocol": request.environ["SERVER_PROTOCOL"],
                "stage": stage,
                "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": identity,
                "domainName": host,
                "apiId": hashlib.sha1(route.api.encode()).hexdigest()[:10],
            },
            "body": base64.b64encode(body).decode() if b64 else text or None,
            "isBase64Encoded": b64,
        }

    def dispatch(self, request: Request, request_id: str, apigw_id: str) -> Response:
        """Check, route, throttle, invoke and map one request."""
        declared = _declared_length(request.headers.get("Content-Length"))
        if declared < 0:
            return gateway_reply(400, "Bad Request")
        if declared > API_GATEWAY_PAYLOAD_BYTES:
            return gateway_reply(413, "Request Too Long")
        found = self.find_route(unquote(urlsplit(request.environ["RAW_URI"]).path), request.method)
        if found is None:
            return gateway_reply(403, "Missing Authentication Token")
        route, params = found
        if (bucket := self.buckets.get(route.api)) is not None and not bucket.take():
            return gateway_reply(429, "Too Many Requests")
        request.max_content_length = API_GATEWAY_PAYLOAD_BYTES  # chunked bodies too
        try:
            body = request.get_data()
        except RequestEntityTooLarge:
            return gateway_reply(413, "Request Too Long")
        except (OSError, BadRequest):  # broken chunked encoding, client gone
            return gateway_reply(400, "Bad Request")
        validator = self.validators.get((route.api, route.method, route.path))
        if validator is not None and not validator.check(request.content_type, body):
            return gateway_reply(400, "Invalid request body")
        timeout = self.integration_timeout
        deadline = time.monotonic() + timeout
        event = self.build_event(request, route, params, body, request_id, apigw_id)
        payload = json.dumps(event).encode()
        if len(payload) > LAMBDA_REQUEST_BYTES:
            log.warning("%s: event of %d bytes is over Lambda's 6 MB", request_id, len(payload))
            return gateway_reply(413, "Request Too Long")
        try:
            result = self.pools[route.function].invoke(payload, deadline)
        except GatewayTimeout as exc:
            log.warning("%s: integration timeout after %.1f s (%s)", request_id, timeout, exc)
            return gateway_reply(504, "Endpoint request timed out")
        except FunctionThrottled as exc:  # Lambda's 429 reaches the client as a 500
            log.warning("%s: Lambda throttled the invocation: %s", request_id, exc)
            reply = gateway_reply(500, "Internal server error")
            reply.headers["X-Lambda-Emulator-Throttled"] = "true"
            return reply
        try:
            reply = map_proxy_result(result)
        except BadGateway as exc:
            log.warning("%s: 502 from %s: %s", request_id, result.instance, exc)
            reply = gateway_reply(502, "Internal server error")
        add = reply.headers.add  # the emulator's own numbers (not API Gateway headers)
        add("X-Lambda-Emulator-Instance", result.instance)
        add("X-Lambda-Emulator-Cold-Start", str(result.cold).lower())
        init = "Restore-Duration-Ms" if result.restored else "Init-Duration-Ms"
        for name, value in (
            (init, result.init_ms),
            ("Duration-Ms", result.duration_ms),
            ("Max-Memory-Used-Mb", result.max_memory_mb),
        ):
            if value is not None:
                add(f"X-Lambda-Emulator-{name}", f"{value:.2f}")
        start = "restored from the snapshot in" if result.restored else "cold start, init"
        cold = f" ({start} {result.init_ms:.1f}ms)" if result.init_ms is not None else ""
        request.environ["apigw.note"] = result.instance + cold  # for the request's log line
        return reply

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI app: one reply per request, one log line once it is sent."""
        started, request = time.monotonic(), Request(environ)
        request_id = str(uuid.uuid4())
        apigw_id = base64.b64encode(os.urandom(12), b"-_").decode()
        try:
            reply = self.dispatch(request, request_id, apigw_id)
        except Exception:
            log.exception("%s: front failure", request_id)
            reply = gateway_reply(500, "Internal server error")
        reply.headers.extend([("x-amzn-RequestId", request_id), ("x-amz-apigw-id", apigw_id)])

        def sent() -> None:
            ms = (time.monotonic() - started) * 1000
            status, note = reply.status_code, environ.get("apigw.note", "-")
            log.info("%s %s %d %.1fms %s", request.method, environ["RAW_URI"], status, ms, note)

        reply.call_on_close(sent)
        return reply(environ, start_response)
