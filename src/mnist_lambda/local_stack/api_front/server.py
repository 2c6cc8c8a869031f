"""The API front's HTTP server: routes from the template, one proxy event per request.

A werkzeug WSGI app; each request is checked, routed, throttled, validated, turned into an
event (:mod:`.event`), invoked and its result mapped back (:mod:`.proxy_result`), in the order
docs/local-stack.md gives.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from mnist_lambda.aws_limits import (
    API_GATEWAY_PAYLOAD_BYTES,
    API_GATEWAY_TIMEOUT_S,
    LAMBDA_REQUEST_BYTES,
)
from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.api_front.auth import (
    ApiKeyGate,
    IamGate,
    Identities,
    StaticIdentities,
    method_arn,
)
from mnist_lambda.local_stack.api_front.event import RequestIds, build_event
from mnist_lambda.local_stack.api_front.proxy_result import BadGateway, map_proxy_result
from mnist_lambda.local_stack.api_front.sigv4 import Headers, Refusal, parse_authorization
from mnist_lambda.local_stack.api_front.throttle import TokenBucket
from mnist_lambda.local_stack.api_front.validation import body_validators
from mnist_lambda.local_stack.invocation import (
    Function,
    FunctionThrottled,
    GatewayTimeout,
    InvokeResult,
)
from mnist_lambda.template.reader import AUTH_API_KEY, AUTH_IAM, Route, StackSpec

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("mnist_lambda.local_stack.api")

_ERROR_TYPES = {
    400: "BadRequestException",
    403: "MissingAuthenticationTokenException",
    429: "TooManyRequestsException",
    500: "InternalServerErrorException",
    502: "InternalServerErrorException",
}


def gateway_reply(
    status: int, message: str, error_type: str | None = None, *, key: str = "message"
) -> Response:
    """One of API Gateway's own JSON error responses: ``{key: message}`` with its
    ``x-amzn-ErrorType`` (``error_type``, else the usual one for ``status``)."""
    headers = [("Content-Type", "application/json")]
    if (error_type := error_type or _ERROR_TYPES.get(status)) is not None:
        headers.append(("x-amzn-ErrorType", error_type))
    body = json.dumps({key: message}, separators=(",", ":"))  # API Gateway's bytes: no spaces
    return Response(body, status, headers)


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
    """The HTTP server in front of the functions (logical id -> what invokes it)."""

    def __init__(
        self,
        spec: StackSpec,
        functions: Mapping[str, Function],
        *,
        port: int = 0,
        integration_timeout: float = API_GATEWAY_TIMEOUT_S,
        identities: Identities | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.functions, self.port, self.region = functions, port, region
        self.integration_timeout = integration_timeout
        # AWS_IAM methods: who signs and what their policies allow (none: every caller refused)
        self.iam = IamGate(identities or StaticIdentities({}, {}), region)
        self.api_keys = ApiKeyGate()
        self.configure(spec)
        self._server: BaseWSGIServer | None = None

    def configure(self, spec: StackSpec) -> None:
        """Routes, validation and stage throttles of ``spec`` (at start and on a redeploy)."""
        self.spec, self.validators = spec, body_validators(spec)
        self.buckets = {api: TokenBucket(t) for api, t in spec.throttling.items()}
        self.api_keys.configure(spec)
        self.iam.forget_policies()

    def method_arn(self, route: Route, method: str, path: str) -> str:
        """The ``execute-api:Invoke`` resource of a request on ``route`` (path without stage)."""
        return method_arn(self.region, route.api, route.stage, method, path)

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

    def dispatch(self, request: Request, ids: RequestIds) -> Response:
        """Check, route, throttle, read, validate, invoke and map one request."""
        declared = _declared_length(request.headers.get("Content-Length"))
        if declared < 0:
            return gateway_reply(400, "Bad Request")
        if declared > API_GATEWAY_PAYLOAD_BYTES:
            return gateway_reply(413, "Request Too Long")
        path = unquote(urlsplit(request.environ["RAW_URI"]).path)
        found = self.find_route(path, request.method)
        if found is None:
            return self._no_route(request, ids)
        route, params = found
        signed = route.auth == AUTH_IAM  # the signature covers the body: read it first
        body = self._read_body(request) if signed else b""
        if isinstance(body, Response):
            return body
        try:
            self._authorize(request, route, path, body)
        except Refusal as refusal:
            log.info(
                "%s: refused %s %s: %s %d, %s",
                ids.request_id,
                request.method,
                path,
                refusal.error_type,
                refusal.status,
                refusal.reason,
            )
            return gateway_reply(
                refusal.status, refusal.message, refusal.error_type, key=refusal.key
            )
        if (bucket := self.buckets.get(route.api)) is not None and not bucket.take():
            return gateway_reply(429, "Too Many Requests")
        body = body if signed else self._read_body(request)
        if isinstance(body, Response):
            return body
        validator = self.validators.get((route.api, route.method, route.path))
        if validator is not None and not validator.check(request.content_type, body):
            return gateway_reply(400, "Invalid request body")
        binary = self.spec.binary_media_types
        event = build_event(
            request, route, params, body, ids, port=self.port, binary_media_types=binary
        )
        return self._integrate(request, route, json.dumps(event).encode(), ids)

    @staticmethod
    def _read_body(request: Request) -> bytes | Response:
        """The body (up to API Gateway's 10 MB, chunked too), or API Gateway's answer."""
        request.max_content_length = API_GATEWAY_PAYLOAD_BYTES
        try:
            return request.get_data()
        except RequestEntityTooLarge:
            return gateway_reply(413, "Request Too Long")
        except (OSError, BadRequest):  # broken chunked encoding, client gone
            return gateway_reply(400, "Bad Request")

    def _no_route(self, request: Request, ids: RequestIds) -> Response:
        """No such resource or method: 403 Missing Authentication Token, or, as API Gateway
        answers when the request carries an Authorization header it cannot read, that."""
        headers = Headers(request.environ.get("apigw.headers") or request.headers.items())
        if (value := headers.get("authorization")) is not None:
            try:
                parse_authorization(value, headers)
            except Refusal as refusal:
                if refusal.error_type == "IncompleteSignatureException":
                    log.info("%s: no route; %s", ids.request_id, refusal.reason)
                    return gateway_reply(refusal.status, refusal.message, refusal.error_type)
        return gateway_reply(403, "Missing Authentication Token")

    def _authorize(self, request: Request, route: Route, path: str, body: bytes) -> None:
        """Raise a Refusal unless the request passes ``route``'s auth (AWS_IAM: signature and
        ``execute-api:Invoke``; API_KEY: key, usage plan throttle and quota)."""
        if route.auth not in (AUTH_IAM, AUTH_API_KEY):
            return
        headers = Headers(request.environ.get("apigw.headers") or request.headers.items())
        stageless = path[len(route.stage) + 1 :] if path.startswith(f"/{route.stage}/") else path
        if route.auth == AUTH_API_KEY:
            key = self.api_keys.check(headers, route.api, route.stage)
            request.environ["apigw.identity"] = {"apiKey": key.value, "apiKeyId": key.id}
            return
        host = headers.get("host") or f"{procs.HOST}:{self.port}"
        url = f"http://{host}{request.environ['RAW_URI']}"
        resource = self.method_arn(route, request.method, stageless)
        principal = self.iam.check(request.method, url, headers, body, resource)
        request.environ["apigw.identity"] = principal.identity()

    def _integrate(
        self, request: Request, route: Route, payload: bytes, ids: RequestIds
    ) -> Response:
        """Invoke ``route``'s function with the event and map its answer."""
        if len(payload) > LAMBDA_REQUEST_BYTES:
            log.warning(
                "%s: event of %d bytes is over Lambda's 6 MB", ids.request_id, len(payload)
            )
            return gateway_reply(413, "Request Too Long")
        timeout = self.integration_timeout
        try:
            result = self.functions[route.function].invoke(payload, time.monotonic() + timeout)
        except GatewayTimeout as exc:
            log.warning("%s: integration timeout after %.1f s (%s)", ids.request_id, timeout, exc)
            return gateway_reply(504, "Endpoint request timed out")
        except FunctionThrottled as exc:  # Lambda's 429 reaches the client as a 500
            log.warning("%s: Lambda throttled the invocation: %s", ids.request_id, exc)
            reply = gateway_reply(500, "Internal server error")
            reply.headers["X-Lambda-Emulator-Throttled"] = "true"
            return reply
        try:
            reply = map_proxy_result(result)
        except BadGateway as exc:
            log.warning("%s: 502 from %s: %s", ids.request_id, result.instance, exc)
            reply = gateway_reply(502, "Internal server error")
        _add_emulator_headers(reply, result)
        start = "restored from the snapshot in" if result.restored else "cold start, init"
        cold = f" ({start} {result.init_ms:.1f}ms)" if result.init_ms is not None else ""
        request.environ["apigw.note"] = result.instance + cold  # for the request's log line
        return reply

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI app: one reply per request, one log line once it is sent."""
        started, request, ids = time.monotonic(), Request(environ), RequestIds.new()
        try:
            reply = self.dispatch(request, ids)
        except Exception:
            log.exception("%s: front failure", ids.request_id)
            reply = gateway_reply(500, "Internal server error")
        reply.headers.extend(
            [("x-amzn-RequestId", ids.request_id), ("x-amz-apigw-id", ids.apigw_id)]
        )

        def sent() -> None:
            ms = (time.monotonic() - started) * 1000
            status, note = reply.status_code, environ.get("apigw.note", "-")
            log.info("%s %s %d %.1fms %s", request.method, environ["RAW_URI"], status, ms, note)

        reply.call_on_close(sent)
        return reply(environ, start_response)


def _add_emulator_headers(reply: Response, result: InvokeResult) -> None:
    """The emulator's own figures for the invocation (not API Gateway headers)."""
    add = reply.headers.add
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
