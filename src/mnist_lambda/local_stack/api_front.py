"""An API Gateway REST API in front of the emulated function (Lambda proxy integration).

A werkzeug WSGI app: each HTTP request becomes a REST API (payload v1.0) proxy event, is invoked
through a :class:`~mnist_lambda.local_stack.lambda_emulator.FunctionPool`, and the proxy result
is mapped back. API Gateway's own answers are reproduced:

=====================================================  ====  ====================================
condition                                              code  body
=====================================================  ====  ====================================
no such resource/method (REST APIs)                    403   Missing Authentication Token
over the stage's throttle (token bucket: rate, burst)  429   Too Many Requests
body fails the method's request validator (OpenAPI)    400   Invalid request body
request body over 10 MB (declared: before reading)     413   Request Too Long
event over Lambda's 6 MB invocation limit              413   Request Too Long
no answer within the integration timeout (29 s)        504   Endpoint request timed out
function error, malformed proxy result, response over
Lambda's 6 MB, emulator dead or refusing connections   502   Internal server error
=====================================================  ====  ====================================

Checked in that order: declared size, route, throttle, body (read up to the limit), validator,
event size, invocation. The throttle is the stage's ``MethodSettings`` (``spec.throttling``): a
token bucket of ``burst`` tokens refilled at ``rate`` per second; a stage without one is not
throttled. Routes are served as ``/<stage>/<path>`` (as on ``execute-api``) and as ``/<path>``.
werkzeug's server closes the connection after each response (no keep-alive).

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
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from mnist_lambda.local_stack.cfn_template import ACCOUNT_ID, Route, StackSpec, Throttle
from mnist_lambda.local_stack.lambda_emulator import FunctionPool, GatewayTimeout, InvokeResult

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("mnist_lambda.local_stack.api")

# fmt: off
_PROXY_RESULT_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
_TEXT_SUBTYPES = {"json", "xml", "javascript", "x-www-form-urlencoded", "graphql", "yaml",
                  "x-yaml", "csv", "html", "x-ndjson"}
# request headers API Gateway does not pass to the integration
_DROP_REQUEST_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "te",
                         "upgrade", "proxy-connection"}
# response headers API Gateway renames to x-amzn-Remapped-<name>, or drops
_REMAP_RESPONSE_HEADERS = {"authorization", "connection", "content-md5", "date", "expect", "host",
                           "max-forwards", "proxy-authenticate", "server", "te", "trailer",
                           "transfer-encoding", "upgrade", "user-agent", "www-authenticate"}
_DROP_RESPONSE_HEADERS = {"content-length", "keep-alive"}
_IDENTITY_UNSET = ("cognitoIdentityPoolId", "accountId", "cognitoIdentityId", "caller",
                   "principalOrgId", "accessKey", "cognitoAuthenticationType",
                   "cognitoAuthenticationProvider", "userArn", "user")
# fmt: on
_ERROR_TYPES = {
    400: "BadRequestException",
    403: "MissingAuthenticationTokenException",
    429: "TooManyRequestsException",
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
            return validator.is_valid(json.loads(body.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError):
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
        if pattern in ("*/*", media) or (
            pattern.endswith("/*") and media.startswith(pattern[:-1])
        ):
            return False
    if not media:
        return True  # no type: text if it decodes as UTF-8
    main, _, sub = media.partition("/")
    return main == "text" or sub in _TEXT_SUBTYPES or sub.endswith(("+json", "+xml"))


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
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        raise BadGateway("malformed Lambda proxy response: body is not a string")
    try:
        b64 = payload.get("isBase64Encoded")
        data = base64.b64decode(body or "", validate=True) if b64 else (body or "").encode()
    except (binascii.Error, ValueError) as exc:
        raise BadGateway("malformed Lambda proxy response: bad base64 body") from exc
    multi, single = payload.get("multiValueHeaders") or {}, payload.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise BadGateway("malformed Lambda proxy response: headers must be objects")
    merged: dict[str, list[str]] = {}  # multiValueHeaders win, as in API Gateway
    for name, values in multi.items():
        if not isinstance(values, list):
            raise BadGateway("malformed Lambda proxy response: multiValueHeaders values")
        merged[str(name)] = [_header_value(v) for v in values]
    known = {k.lower() for k in merged}
    merged.update(
        {str(k): [_header_value(v)] for k, v in single.items() if k.lower() not in known}
    )
    headers: list[tuple[str, str]] = []
    for name, values in merged.items():
        low = name.lower()
        if low not in _DROP_RESPONSE_HEADERS:
            out = f"x-amzn-Remapped-{name}" if low in _REMAP_RESPONSE_HEADERS else name
            headers.extend((out, v) for v in values)
    if "content-type" not in {k.lower() for k, _ in headers}:
        headers.append(("Content-Type", "application/json"))
    return Reply(status, headers, data, result.instance)


def _header_value(value: Any) -> str:
    if isinstance(value, dict | list):
        raise BadGateway("malformed Lambda proxy response: header value is not a scalar")
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "" if value is None else str(value)
    if "\r" in text or "\n" in text:
        raise BadGateway("malformed Lambda proxy response: newline in a header value")
    return text


def _emulator_headers(result: InvokeResult) -> list[tuple[str, str]]:
    """The emulator's own numbers (not API Gateway headers): instance, cold start, durations."""
    headers = [
        ("X-Lambda-Emulator-Instance", result.instance),
        ("X-Lambda-Emulator-Cold-Start", "true" if result.cold else "false"),
    ]
    if result.init_ms is not None:
        headers.append(("X-Lambda-Emulator-Init-Duration-Ms", f"{result.init_ms:.2f}"))
    if result.duration_ms is not None:
        headers.append(("X-Lambda-Emulator-Duration-Ms", f"{result.duration_ms:.2f}"))
    return headers


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
        self.spec, self.pools, self.port = spec, pools, port
        self.integration_timeout = integration_timeout
        self.validators = body_validators(spec)
        self.buckets = {api: TokenBucket(t) for api, t in spec.throttling.items()}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{procs.HOST}:{self.port}"

    def route_url(self, route: Route) -> str:
        """The full URL of a route, stage included."""
        return f"{self.url}/{route.stage}{route.path}"

    def start(self) -> None:
        """Bind 127.0.0.1:port (0: a free port) and serve in a background thread."""
        try:
            server = make_server(
                procs.HOST, self.port, self, threaded=True, request_handler=_Handler
            )
        except SystemExit as exc:  # werkzeug exits when it cannot bind
            raise OSError(f"API front cannot listen on {procs.HOST}:{self.port}") from exc
        self._server, self.port = server, server.port
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.2,), daemon=True, name="api-front"
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
        candidates: list[tuple[str | None, str]] = [
            (stage, path[len(stage) + 1 :] or "/")
            for stage in self.spec.stages
            if path == f"/{stage}" or path.startswith(f"/{stage}/")
        ]
        for stage, rest in [*candidates, (None, path)]:
            for route in self.spec.routes:
                if stage in (None, route.stage) and route.method in (method, "ANY"):
                    params = route.match(rest)
                    if params is not None:
                        return route, route.stage, params
        return None

    def build_event(
        self,
        request: Request,
        route: Route,
        stage: str,
        path_params: dict[str, str],
        body: bytes,
        request_id: str,
        apigw_id: str,
    ) -> dict[str, Any]:
        """The REST API (payload format 1.0) Lambda proxy event for one request."""
        raw_path = urlsplit(request.environ["RAW_URI"]).path
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
        added = {"X-Forwarded-For": client_ip, "X-Forwarded-Port": str(self.port),
                 "X-Forwarded-Proto": "http", "X-Amzn-Trace-Id": trace}  # fmt: skip
        multi |= {k: [v] for k, v in added.items() if k.lower() not in names}
        mquery = dict(request.args.lists())
        if not body:
            text_body, b64 = None, False
        elif is_text(request.content_type, self.spec.binary_media_types):
            try:
                text_body, b64 = body.decode("utf-8"), False
            except UnicodeDecodeError:
                text_body, b64 = base64.b64encode(body).decode(), True
        else:
            text_body, b64 = base64.b64encode(body).decode(), True
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
            "body": text_body,
            "isBase64Encoded": b64,
        }

    def dispatch(self, request: Request, request_id: str, apigw_id: str) -> Reply:
        """Check, route, throttle, invoke and map one request."""
        declared = _declared_length(request.headers.get("Content-Length"))
        if declared < 0:
            return gateway_reply(400, "Bad Request")
        if declared > API_GATEWAY_PAYLOAD_BYTES:
            return gateway_reply(413, "Request Too Long")
        found = self.find_route(unquote(urlsplit(request.environ["RAW_URI"]).path), request.method)
        if found is None:
            return gateway_reply(403, "Missing Authentication Token")
        route, stage, params = found
        bucket = self.buckets.get(route.api)
        if bucket is not None and not bucket.take():
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
        deadline = time.monotonic() + self.integration_timeout
        event = self.build_event(request, route, stage, params, body, request_id, apigw_id)
        payload = json.dumps(event).encode()
        if len(payload) > LAMBDA_REQUEST_BYTES:
            log.warning("%s: event of %d bytes is over Lambda's 6 MB", request_id, len(payload))
            return gateway_reply(413, "Request Too Long")
        try:
            result = self.pools[route.function].invoke(payload, deadline)
        except GatewayTimeout as exc:
            log.warning("%s: integration timeout after %.1f s (%s)",
                        request_id, self.integration_timeout, exc)  # fmt: skip
            return gateway_reply(504, "Endpoint request timed out")
        try:
            reply = map_proxy_result(result)
        except BadGateway as exc:
            log.warning("%s: 502 from %s: %s", request_id, result.instance, exc)
            reply = gateway_reply(502, "Internal server error")
        cold = f" (cold start, init {result.init_ms:.1f}ms)" if result.init_ms is not None else ""
        headers = [*reply.headers, *_emulator_headers(result)]
        return dataclasses.replace(reply, headers=headers, instance=result.instance, note=cold)

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
        ids = [("x-amzn-RequestId", request_id), ("x-amz-apigw-id", apigw_id)]
        response = Response(reply.body, reply.status, [*reply.headers, *ids])

        def sent() -> None:
            ms = (time.monotonic() - started) * 1000
            log.info("%s %s %d %.1fms %s%s", request.method, environ["RAW_URI"], reply.status, ms,
                     reply.instance, reply.note)  # fmt: skip

        response.call_on_close(sent)
        return response(environ, start_response)
