"""Fault injection against the running local stack: S3 down, resetting, failing, slow, stalled;
the object deleted or replaced between HEAD and GET; the function killed by its timeout; the
emulator process dying mid-request. Each gives its documented status and a clear message, and
the stack answers correctly again afterwards.

The function's S3 endpoint (AWS_ENDPOINT_URL_S3) is a small HTTP proxy on loopback in front
of the stack's moto server, so the tests can switch faults on and off per request.
"""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from openapi_contract import assert_answer
from polling import wait_until
from real_stack import PREFIX, npy_bytes, predict, real_stack
from reliability_run import write_figures as _write_figures
from repo_paths import ROOT

from mnist_lambda import local_stack
from mnist_lambda.local_stack import procs

pytestmark = pytest.mark.timeout(240)

SURVIVED: dict[str, Any] = {}


class FaultProxy:
    """HTTP/1.0 proxy to moto with switchable faults (``mode``)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.delay = 0.0
        self.on_head: Any = None  # called with the object path after a HEAD is answered
        self.stop_event = threading.Event()
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: faults apply at once

            def _handle(self) -> None:
                proxy.requests.append((self.command, self.path))
                if proxy.mode == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    return
                if proxy.mode == "slow":
                    proxy.stop_event.wait(proxy.delay)
                if proxy.mode == "error500":
                    body = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if self.command == "HEAD" and proxy.on_head is not None:
                    proxy.on_head(unquote(urlsplit(self.path).path))
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "server", "date"):
                        self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = Handler
        self.port = procs.free_port()
        self.server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
        self.server = server

    def stop(self) -> None:
        """Close the port: S3 is down (connection refused)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def reset(self) -> None:
        self.mode, self.delay, self.on_head = "pass", 0.0, None
        self.stop_event.set()
        self.stop_event = threading.Event()


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:30], dtype=np.uint8)


@pytest.fixture(scope="module")
def proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port=0)  # the upstream port is set once moto is up
    proxy.start()
    yield proxy
    proxy.reset()
    proxy.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, small_model_path: Path, rows, proxy: FaultProxy
) -> Iterator[local_stack.StackInfo]:
    state = tmp_path_factory.mktemp("fault-stack")
    with real_stack(
        state,
        small_model_path,
        instances=1,
        extra_args=["-e", f"AWS_ENDPOINT_URL_S3={proxy.url}"],
    ) as info:
        proxy.upstream_port = info.s3_port
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key=PREFIX + "digits.npy", Body=npy_bytes(rows)
        )
        yield info
    _write_figures("faults", SURVIVED)


@pytest.fixture(autouse=True)
def _clean_proxy(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "proxy" in request.fixturenames:
        proxy: FaultProxy = request.getfixturevalue("proxy")
        proxy.reset()
        if proxy.server is None:
            proxy.start()


def recovered(stack: local_stack.StackInfo, expected: list[int], name: str, **facts: Any) -> None:
    """The stack predicts correctly again; record the fault as survived."""
    started = time.perf_counter()
    resp = predict(stack, PREFIX + "digits.npy")
    assert assert_answer(resp, 200) == expected
    SURVIVED[name] = {**facts, "recovery_request_s": round(time.perf_counter() - started, 2)}


def timed_predict(stack: local_stack.StackInfo, key: str = PREFIX + "digits.npy"):
    started = time.perf_counter()
    resp = predict(stack, key)
    return resp, round(time.perf_counter() - started, 2)


def test_baseline(stack, expected) -> None:
    recovered(stack, expected, "baseline")


def test_s3_down_is_503(stack, proxy, expected) -> None:
    proxy.stop()
    resp, seconds = timed_predict(stack)
    body = assert_answer(resp, 503, code="s3_unavailable")
    assert "could not be reached" in body["error"]["message"]
    proxy.start()
    recovered(stack, expected, "s3_down", status=503, seconds=seconds)


def test_s3_resetting_connections_is_503(stack, proxy, expected) -> None:
    proxy.mode = "reset"
    resp, seconds = timed_predict(stack)
    assert_answer(resp, 503, code="s3_unavailable")
    proxy.reset()
    recovered(stack, expected, "s3_resets_connections", status=503, seconds=seconds)


def test_s3_internal_errors_are_502_after_retries(stack, proxy, expected) -> None:
    proxy.mode = "error500"
    resp, seconds = timed_predict(stack)
    body = assert_answer(resp, 502, code="s3_error")
    assert "HTTP 500" in body["error"]["message"]
    assert len(proxy.requests) >= 3  # the client retried
    proxy.reset()
    recovered(stack, expected, "s3_answers_500", status=502, seconds=seconds)


def test_slow_s3_within_the_timeouts_still_answers(stack, proxy, expected) -> None:
    proxy.mode, proxy.delay = "slow", 1.5
    resp, seconds = timed_predict(stack)
    assert assert_answer(resp, 200) == expected
    assert seconds >= 3.0  # HEAD and GET were both delayed
    proxy.reset()
    recovered(stack, expected, "s3_slow_1.5s_per_call", status=200, seconds=seconds)


def test_stalled_s3_is_the_functions_own_504(stack, proxy, expected) -> None:
    """S3 never answers: read timeouts and retries stop within the function's 25 s."""
    proxy.mode, proxy.delay = "slow", 60
    resp, seconds = timed_predict(stack)
    body = assert_answer(resp, 504, code="timeout")
    assert "did not answer in time" in body["error"]["message"]
    assert seconds < 25
    proxy.reset()
    recovered(stack, expected, "s3_stalled", status=504, seconds=seconds)


def test_object_deleted_between_head_and_get_is_404(stack, proxy, expected, rows) -> None:
    client = local_stack.s3_client(stack)
    key = PREFIX + "vanishing.npy"
    client.put_object(Bucket=stack.bucket, Key=key, Body=npy_bytes(rows))

    def delete(path: str) -> None:
        if path.endswith(key):
            client.delete_object(Bucket=stack.bucket, Key=key)

    proxy.on_head = delete
    resp, seconds = timed_predict(stack, key)
    body = assert_answer(resp, 404, code="not_found")
    assert key in body["error"]["message"]
    assert [m for m, p in proxy.requests if p.endswith(key)][-2:] == ["HEAD", "GET"]
    proxy.reset()
    recovered(stack, expected, "deleted_between_head_and_get", status=404, seconds=seconds)


def test_object_grown_between_head_and_get_is_413(stack, proxy, expected, rows) -> None:
    client = local_stack.s3_client(stack)
    key = PREFIX + "growing.npy"
    client.put_object(Bucket=stack.bucket, Key=key, Body=npy_bytes(rows))
    huge = b"\x93NUMPY" + b"\0" * (52428800 + 10)

    def grow(path: str) -> None:
        if path.endswith(key):
            client.put_object(Bucket=stack.bucket, Key=key, Body=huge)

    proxy.on_head = grow
    resp, seconds = timed_predict(stack, key)
    body = assert_answer(resp, 413, code="object_too_large")
    assert "grew" in body["error"]["message"]
    proxy.reset()
    recovered(stack, expected, "replaced_by_larger_between_head_and_get", status=413,
              seconds=seconds)  # fmt: skip


def test_emulator_dying_mid_request_is_502_then_recovers(stack, proxy, expected) -> None:
    proxy.mode, proxy.delay = "slow", 30  # hold the invocation inside the function
    current = local_stack.read(Path(stack.state_file).parent)
    assert current is not None
    (pid,) = current.emulator_pids
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(timed_predict, stack)
        assert wait_until(lambda: proxy.requests and proxy.requests[-1][0] == "HEAD", 20)
        os.kill(pid, signal.SIGKILL)
        resp, seconds = future.result(60)
    assert_answer(resp, 502, gateway="Internal server error")
    proxy.reset()
    assert wait_until(lambda: not procs.pid_alive(pid), 10)
    recovered(stack, expected, "emulator_killed_mid_request", status=502, seconds=seconds)
    again = local_stack.read(Path(stack.state_file).parent)
    assert again is not None and pid not in again.emulator_pids


def test_moto_killed_is_restarted_by_the_supervisor(stack, expected, rows) -> None:
    """moto itself dies: the supervisor restarts it on the same port (objects are lost: 404
    until they are uploaded again, then correct answers)."""
    state_dir = Path(stack.state_file).parent
    before = local_stack.read(state_dir)
    assert before is not None and before.s3_pid
    os.kill(before.s3_pid, signal.SIGKILL)

    def restarted() -> bool:
        info = local_stack.read(state_dir)
        return bool(info and info.s3_pid != before.s3_pid and procs.port_open(info.s3_port))

    assert wait_until(restarted, 30)
    resp, seconds = timed_predict(stack)
    assert_answer(resp, 404, code="not_found")
    local_stack.s3_client(stack).put_object(
        Bucket=stack.bucket, Key=PREFIX + "digits.npy", Body=npy_bytes(rows)
    )
    recovered(stack, expected, "moto_killed", status=404, seconds=seconds)


# --- the function exceeding its own timeout --------------------------------------------------


@pytest.fixture(scope="module")
def short_timeout_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """template_no_auth.yaml with the function's Timeout cut to 3 s (same API definition)."""
    root = tmp_path_factory.mktemp("short-timeout")
    text = (ROOT / "template_no_auth.yaml").read_text()
    assert text.count("      Timeout: 25\n") == 1
    (root / "template_no_auth.yaml").write_text(text.replace("Timeout: 25\n", "Timeout: 3\n"))
    shutil.copytree(ROOT / "openapi", root / "openapi")
    shutil.copy(ROOT / "Dockerfile", root / "Dockerfile")
    return root / "template_no_auth.yaml"


def test_function_killed_by_its_timeout_is_502_then_recovers(
    tmp_path: Path, small_model_path: Path, short_timeout_template: Path, rows, expected
) -> None:
    proxy = FaultProxy(upstream_port=0)
    proxy.start()
    try:
        with real_stack(
            tmp_path / "stack",
            small_model_path,
            template=short_timeout_template,
            extra_args=["-e", f"AWS_ENDPOINT_URL_S3={proxy.url}"],
        ) as info:
            proxy.upstream_port = info.s3_port
            local_stack.s3_client(info).put_object(
                Bucket=info.bucket, Key=PREFIX + "digits.npy", Body=npy_bytes(rows)
            )
            assert assert_answer(predict(info, PREFIX + "digits.npy"), 200) == expected
            proxy.mode, proxy.delay = "slow", 30  # a HEAD that outlasts the 3 s timeout
            resp, seconds = timed_predict(info)
            assert_answer(resp, 502, gateway="Internal server error")
            assert 2.5 < seconds < 15
            proxy.reset()
            started = time.perf_counter()
            resp = predict(info, PREFIX + "digits.npy")
            assert assert_answer(resp, 200) == expected
            SURVIVED["function_timeout_3s"] = {
                "status": 502,
                "seconds": seconds,
                "recovery_request_s": round(time.perf_counter() - started, 2),
                "recovery_cold_start": resp.headers.get("X-Lambda-Emulator-Cold-Start"),
            }
    finally:
        proxy.reset()
        proxy.stop()
