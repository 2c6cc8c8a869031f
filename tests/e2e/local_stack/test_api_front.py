"""The API Gateway front + Lambda emulator pool, in-process, with a tiny echo function."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from echo_app import write_echo_app, write_throttled_echo_app
from polling import wait_until

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.api_front.server import ApiFront
from mnist_lambda.local_stack.environment import function_environment
from mnist_lambda.local_stack.invocation import InvokeResult
from mnist_lambda.local_stack.lambda_emulator import FunctionPool
from mnist_lambda.template.reader import Throttle, load_stack_spec

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., tuple[ApiFront, FunctionPool]]


@pytest.fixture(scope="module")
def echo_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_echo_app(tmp_path_factory.mktemp("echo"))


@pytest.fixture(scope="module")
def make_front(echo_app: tuple[Path, Path]) -> Iterator[Factory]:
    """Builds fronts over pools of the echo function; everything is stopped at the end."""
    app_dir, template = echo_app
    started: list[tuple[ApiFront, FunctionPool]] = []

    def make(
        instances: int = 1,
        integration_timeout: float = 10.0,
        function_timeout: int | None = None,
        spec_template: Path | None = None,
    ) -> tuple[ApiFront, FunctionPool]:
        spec = load_stack_spec(spec_template or template)
        fspec = spec.functions["EchoFunction"]
        if function_timeout is not None:
            fspec = dataclasses.replace(fspec, timeout=function_timeout)
        env = function_environment(fspec, {"ALLOWED_BUCKETS": "test-bucket"})
        pool = FunctionPool(fspec, env, app_dir, instances)
        pool.start()
        front = ApiFront(spec, {"EchoFunction": pool}, integration_timeout=integration_timeout)
        front.start()
        started.append((front, pool))
        return front, pool

    yield make
    for front, pool in started:
        front.stop()
        pool.close()
        assert pool.pids() == []


@pytest.fixture(scope="module")
def shared(make_front: Factory) -> ApiFront:
    """Two instances, generous timeouts: for tests that leave no instance busy."""
    return make_front(instances=2)[0]


def _post(front: ApiFront, payload: object, path: str = "/dev/predict", **kw) -> requests.Response:
    return requests.post(front.url + path, json=payload, timeout=30, **kw)


def test_proxy_event_shape(shared: ApiFront) -> None:
    resp = requests.post(
        shared.url + "/dev/predict?x=1&x=2&y=",
        data=b'{"hello": "world"}',
        headers={"Content-Type": "application/json", "X-Multi": "a", "User-Agent": "pytest"},
        timeout=30,
    )
    assert resp.status_code == 200
    assert resp.headers["X-Echo"] == "yes"
    out = resp.json()
    event = out["event"]
    assert event["resource"] == "/predict"
    assert event["path"] == "/predict"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["X-Multi"] == "a"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["multiValueHeaders"]["X-Multi"] == ["a"]
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["pathParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["requestId"] == resp.headers["x-amzn-RequestId"]
    assert ctx["extendedRequestId"] == resp.headers["x-amz-apigw-id"]
    assert ctx["stage"] == "dev"
    assert ctx["path"] == "/dev/predict"
    assert ctx["resourcePath"] == "/predict"
    assert ctx["httpMethod"] == "POST"
    assert ctx["protocol"] == "HTTP/1.1"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "pytest"
    assert abs(ctx["requestTimeEpoch"] / 1000 - time.time()) < 30
    # the function's environment: template (resolved !Sub), overrides, Lambda's own variables
    env = out["env"]
    assert env["GREETING"] == "hello-us-east-1"
    assert env["ALLOWED_BUCKETS"] == "test-bucket"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "5"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert 0 < out["remaining_ms"] <= 5000
    assert resp.headers["X-Lambda-Emulator-Instance"].startswith("EchoFunction-")


def test_route_without_stage_and_path_parameters(shared: ApiFront) -> None:
    resp = _post(shared, {}, path="/predict")
    assert resp.status_code == 200
    ctx = resp.json()["event"]["requestContext"]
    assert (ctx["stage"], ctx["path"]) == ("dev", "/predict")
    event = requests.get(shared.url + "/dev/items/a%20b", timeout=30).json()["event"]
    assert event["resource"] == "/items/{id}"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["body"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/dev/predict"),
        ("POST", "/dev/nope"),
        ("GET", "/"),
        ("POST", "/prod/predict"),
        ("DELETE", "/predict"),
        ("GET", "/dev/items"),
    ],
)
def test_unknown_route_or_method_is_403(shared: ApiFront, method: str, path: str) -> None:
    resp = requests.request(method, shared.url + path, timeout=30)
    assert resp.status_code == 403
    assert resp.json() == {"message": "Missing Authentication Token"}
    assert resp.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert resp.headers["x-amzn-RequestId"]


def test_status_headers_and_body_mapping(shared: ApiFront) -> None:
    raw = {
        "statusCode": 201,
        "headers": {"X-One": "1", "X-Both": "from-headers", "Server": "mine"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Both": ["from-multi"]},
        "body": "créé",
    }
    resp = _post(shared, {"raw": raw})
    assert resp.status_code == 201
    assert resp.content == "créé".encode()
    assert resp.headers["X-One"] == "1"
    assert resp.headers["X-Both"] == "from-multi"  # multiValueHeaders win, as in API Gateway
    assert resp.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert resp.headers["x-amzn-Remapped-Server"] == "mine"
    assert resp.headers["Content-Type"] == "application/json"  # API Gateway's default
    assert resp.headers["x-amzn-RequestId"] and resp.headers["x-amz-apigw-id"]
    resp = _post(shared, {"raw": {"statusCode": 204}})
    assert (resp.status_code, resp.content) == (204, b"")
    resp = _post(shared, {"raw": {"statusCode": "404", "headers": {"Content-Type": "text/x"}}})
    assert (resp.status_code, resp.headers["Content-Type"]) == (404, "text/x")


def test_base64_bodies_both_ways(shared: ApiFront) -> None:
    data = bytes(range(256)) * 4
    resp = requests.post(
        shared.url + "/dev/predict",
        data=data,
        timeout=30,
        headers={"Content-Type": "application/octet-stream"},
    )
    event = resp.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data
    # non-UTF-8 bytes without a binary type are base64 too
    event = requests.post(
        shared.url + "/dev/predict",
        data=b"\xff\xfe",
        timeout=30,
        headers={"Content-Type": "text/plain"},
    ).json()["event"]
    assert (event["isBase64Encoded"], event["body"]) == (
        True,
        base64.b64encode(b"\xff\xfe").decode(),
    )
    resp = requests.post(
        shared.url + "/dev/predict?binary=1",
        data=data,
        timeout=30,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "raw",
    [
        "just a string",
        [1, 2],
        {"body": "no status"},
        {"statusCode": "abc"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "unexpected": 1},
        {"statusCode": 200, "isBase64Encoded": True, "body": "***"},
        {"statusCode": 200, "headers": {"X": {"nested": 1}}},
    ],
)
def test_malformed_proxy_result_is_502(shared: ApiFront, raw: object) -> None:
    resp = _post(shared, {"raw": raw})
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}


def test_handler_exception_and_runtime_exit_are_502(shared: ApiFront) -> None:
    resp = _post(shared, {"raise": 1})
    assert (resp.status_code, resp.json()) == (502, {"message": "Internal server error"})
    resp = _post(shared, {"exit": 1})  # the runtime process dies; the RIE resets it
    assert resp.status_code == 502
    assert _post(shared, {}).status_code == 200


def _read_http_response(sock: socket.socket) -> bytes:
    """One HTTP response (headers + Content-Length body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n")
                      if h.lower().startswith(b"content-length:")))  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_request_over_10mb_is_413_before_reading(shared: ApiFront) -> None:
    too_big = 10 * 1024 * 1024 + 1
    # a declared length over the limit is refused without waiting for the body
    for expect in ("", "Expect: 100-continue\r\n"):
        with socket.create_connection((procs.HOST, shared.port), timeout=5) as sock:
            sock.sendall(
                f"POST /dev/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {too_big}\r\n"
                f"Content-Type: application/json\r\n{expect}\r\n".encode()
            )
            raw = _read_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 413 "), raw
        assert raw.endswith(b'\r\n\r\n{"message":"Request Too Long"}')
    # a client that sends the whole body still gets the 413
    resp = requests.post(shared.url + "/dev/predict", data=b"x" * too_big, timeout=30)
    assert resp.status_code == 413
    assert resp.json() == {"message": "Request Too Long"}
    # over Lambda's 6 MB invocation payload, under API Gateway's 10 MB: refused as well
    resp = requests.post(shared.url + "/dev/predict", data=b"x" * (7 * 1024 * 1024), timeout=30)
    assert resp.status_code == 413
    assert _post(shared, {}).status_code == 200


def test_response_over_6mb_is_502(shared: ApiFront) -> None:
    assert _post(shared, {"big": 7_000_000}).status_code == 502
    resp = _post(shared, {"big": 5_000_000})
    assert resp.status_code == 200 and len(resp.content) == 5_000_000


def test_concurrent_requests_use_all_instances(shared: ApiFront) -> None:
    _post(shared, {})  # both instances warm enough: at least one is
    results: list[requests.Response] = []

    def call() -> None:
        results.append(_post(shared, {"sleep": 0.8}))

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert [r.status_code for r in results] == [200, 200, 200]
    instances = {r.headers["X-Lambda-Emulator-Instance"] for r in results}
    assert instances == {"EchoFunction-1/g0", "EchoFunction-2/g0"}
    # two run side by side, the third waits for a free instance
    assert 1.6 <= elapsed < 1.6 + 1.5


def test_request_log_line(shared: ApiFront, caplog: pytest.LogCaptureFixture) -> None:
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "mnist_lambda.local_stack.api"]

    with caplog.at_level("INFO", logger="mnist_lambda.local_stack.api"):
        _post(shared, {})
        requests.get(shared.url + "/nope", timeout=30)
        # the line is logged once the response is sent: wait for it
        assert wait_until(lambda: any(line.startswith("GET /nope 403 ") for line in lines()), 5)
    assert any(
        line.startswith("POST /dev/predict 200 ") and "ms EchoFunction-" in line
        for line in lines()
    )


def test_slow_handler_is_504_at_the_integration_timeout(make_front: Factory) -> None:
    front, _ = make_front(instances=1, integration_timeout=1.0)
    started = time.monotonic()
    resp = _post(front, {"sleep": 2.5})
    assert resp.status_code == 504
    assert resp.json() == {"message": "Endpoint request timed out"}
    assert 0.9 < time.monotonic() - started < 2.0


def test_function_timeout_is_502(make_front: Factory) -> None:
    front, _ = make_front(instances=1, function_timeout=1)
    resp = _post(front, {"sleep": 3})  # the RIE stops the function after 1 s
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}
    resp = _post(front, {})
    assert resp.status_code == 200
    assert resp.headers["X-Lambda-Emulator-Cold-Start"] == "true"  # a reset environment


def test_killed_emulator_mid_request_is_502_then_replaced(make_front: Factory) -> None:
    front, pool = make_front(instances=1)
    assert _post(front, {}).status_code == 200
    (old_pid,) = pool.pids()
    box: list[requests.Response] = []
    thread = threading.Thread(target=lambda: box.append(_post(front, {"sleep": 5})))
    thread.start()
    time.sleep(0.7)  # the invocation is running
    os.kill(old_pid, signal.SIGKILL)
    thread.join(10)
    assert box[0].status_code == 502
    assert box[0].json() == {"message": "Internal server error"}
    resp = _post(front, {})
    assert resp.status_code == 200
    assert resp.headers["X-Lambda-Emulator-Cold-Start"] == "true"
    assert pool.pids() and old_pid not in pool.pids()
    assert wait_until(lambda: procs.session_members(old_pid) == [], 5)  # runtime gone too


def test_dead_idle_emulator_is_replaced_without_error(make_front: Factory) -> None:
    front, pool = make_front(instances=1)
    (old_pid,) = pool.pids()
    os.kill(old_pid, signal.SIGKILL)
    time.sleep(0.2)
    assert _post(front, {}).status_code == 200
    assert old_pid not in pool.pids()


def test_pool_redeploy_gives_cold_fresh_instances(make_front: Factory) -> None:
    front, pool = make_front(instances=1)
    assert _post(front, {}).headers["X-Lambda-Emulator-Cold-Start"] == "true"
    assert _post(front, {}).headers["X-Lambda-Emulator-Cold-Start"] == "false"
    old = pool.pids()
    assert pool.redeploy() == 1
    resp = _post(front, {})
    assert resp.headers["X-Lambda-Emulator-Instance"] == "EchoFunction-1/g1"
    assert resp.headers["X-Lambda-Emulator-Cold-Start"] == "true"
    assert float(resp.headers["X-Lambda-Emulator-Init-Duration-Ms"]) > 0
    assert float(resp.headers["X-Lambda-Emulator-Duration-Ms"]) > 0
    assert wait_until(lambda: not set(old) & set(pool.pids()), 5)
    assert json.loads(resp.content)["event"]["httpMethod"] == "POST"


def test_chunked_and_expect_100_bodies(shared: ApiFront) -> None:
    url = shared.url + "/dev/predict"
    chunks = iter([b'{"hello":', b' "chunks"}'])  # a generator body is sent chunked
    event = requests.post(url, data=chunks, timeout=30).json()["event"]
    assert event["body"] == '{"hello": "chunks"}'
    assert "Transfer-Encoding" not in event["headers"]
    # a chunked body over 10 MB is refused as well (read up to the limit only)
    resp = requests.post(url, data=(b"x" * 1024 * 1024 for _ in range(11)), timeout=30)
    assert (resp.status_code, resp.json()) == (413, {"message": "Request Too Long"})
    # "Expect: 100-continue" under the limit: one interim 100, then the answer
    body = b'{"expect": 1}'
    with socket.create_connection((procs.HOST, shared.port), timeout=10) as sock:
        sock.sendall(
            b"POST /dev/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        raw = _read_http_response(sock)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["event"]["body"] == body.decode()


# --- stage throttling -------------------------------------------------------------------------

RATE, BURST = 1.0, 3
"""A slow refill: within a burst of requests sent together, refills are negligible."""


class CountingPool:
    """Counts the invocations that reach the function."""

    def __init__(self, pool: FunctionPool) -> None:
        self.pool, self.calls, self._lock = pool, 0, threading.Lock()

    def invoke(self, payload: bytes, deadline: float) -> InvokeResult:
        with self._lock:
            self.calls += 1
        return self.pool.invoke(payload, deadline)


@pytest.fixture(scope="module")
def throttled(
    make_front: Factory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], tuple[ApiFront, CountingPool]]]:
    """Fresh fronts (a full token bucket each) of a throttled stage over one warm instance."""
    _, template = write_throttled_echo_app(tmp_path_factory.mktemp("throttled"), RATE, BURST)
    first, pool = make_front(instances=1, spec_template=template)
    first.stop()
    pool.invoke(json.dumps({}).encode(), time.monotonic() + 30)  # warm, spending no token
    fronts: list[ApiFront] = []

    def make() -> tuple[ApiFront, CountingPool]:
        counter = CountingPool(pool)
        front = ApiFront(first.spec, {"EchoFunction": counter}, integration_timeout=10.0)
        front.start()
        fronts.append(front)
        return front, counter

    yield make
    for front in fronts:
        front.stop()


def _assert_throttled(resp: requests.Response) -> None:
    assert resp.status_code == 429
    assert resp.content == b'{"message":"Too Many Requests"}'
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert resp.headers["x-amzn-RequestId"] and "Retry-After" not in resp.headers
    assert "X-Lambda-Emulator-Instance" not in resp.headers


def test_stage_throttle_from_the_template(throttled) -> None:
    front, counter = throttled()
    assert front.spec.throttling == {"EchoApi": Throttle(RATE, BURST)}
    # back to back: the burst passes, the excess is 429 and never reaches the function
    resps = [_post(front, {}) for _ in range(BURST + 3)]
    assert [r.status_code for r in resps] == [200] * BURST + [429] * 3
    for resp in resps[BURST:]:
        _assert_throttled(resp)
    assert counter.calls == BURST
    # the 403 of an unknown route comes before the throttle
    assert requests.get(front.url + "/dev/nope", timeout=30).status_code == 403
    # one token is back after 1/rate seconds
    time.sleep(1 / RATE)
    assert _post(front, {}).status_code == 200
    assert counter.calls == BURST + 1


def test_stage_throttle_under_concurrency(throttled) -> None:
    front, counter = throttled()
    n = BURST + 5
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        resp = _post(front, {})
        if resp.status_code == 429:
            _assert_throttled(resp)
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * BURST + [429] * (n - BURST)
    assert counter.calls == BURST


def test_stage_without_throttle_is_not_throttled(shared: ApiFront) -> None:
    assert shared.spec.throttling == {}
    statuses = {requests.get(shared.url + "/dev/items/x", timeout=30).status_code
                for _ in range(30)}  # fmt: skip
    assert statuses == {200}
