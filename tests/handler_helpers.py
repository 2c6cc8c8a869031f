"""Helpers for the handler, payload, template and Dockerfile tests (no fixtures: plain code)."""

from __future__ import annotations

import base64
import copy
import http.server
import json
import os
import re
import socket
import threading
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "events"
LAMBDA_APP = ROOT / "lambda_app"

# --- Lambda ----------------------------------------------------------------------------------


@dataclass
class FakeLambdaContext:
    """The parts of Lambda's context object the handler (and most code) uses."""

    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    function_name: str = "mnist-predict"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mnist-predict"
    memory_limit_in_mb: int = 1024
    log_group_name: str = "/aws/lambda/mnist-predict"
    log_stream_name: str = "2026/11/27/[$LATEST]0123456789abcdef"
    remaining_ms: list[int] = field(default_factory=lambda: [25_000])
    """Successive answers of get_remaining_time_in_millis; the last one repeats."""

    def get_remaining_time_in_millis(self) -> int:
        if len(self.remaining_ms) > 1:
            return self.remaining_ms.pop(0)
        return self.remaining_ms[0]


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json``."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def api_event(body: Any, *, base64_body: bool = False, raw: bool = False) -> dict[str, Any]:
    """An API Gateway REST proxy event (from events/predict_npy.json) with another body.

    ``body`` is JSON-encoded unless ``raw`` (then it is used as the body string as-is).
    """
    event = copy.deepcopy(load_event("predict_npy"))
    text = body if raw else json.dumps(body)
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    event["body"] = text
    event["isBase64Encoded"] = base64_body
    return event


def event_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded JSON body of an event."""
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return json.loads(body)


_PATH_RE = re.compile(r"(?:^|[\s'\"(=])/(?:[\w.-]+/)+[\w.-]*")


def assert_error(response: Mapping[str, Any], status: int, code: str) -> dict[str, Any]:
    """Check an error response's status and documented shape; return its error object."""
    assert response["statusCode"] == status, response
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert set(body) == {"error", "request_id"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response["headers"]["X-Request-Id"]
    assert "Traceback" not in response["body"]
    assert not _PATH_RE.search(body["error"]["message"]), body["error"]["message"]
    return body["error"]


# --- Local HTTP stubs ------------------------------------------------------------------------


def closed_port() -> int:
    """A localhost TCP port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StubReply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stall_after: int | None = None
    """Send this many body bytes, then stall (until the server stops)."""


@contextmanager
def stub_http_server(replies: Mapping[str, StubReply]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 answering each method ("HEAD", "GET") with a fixed
    reply; yields its base URL. Stands in for S3 when moto cannot produce a failure."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self) -> None:
            reply = replies.get(self.command, StubReply(status=405))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if "Content-Length" not in reply.headers:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if reply.stall_after is None:
                self.wfile.write(reply.body)
                return
            self.wfile.write(reply.body[: reply.stall_after])
            self.wfile.flush()
            stop.wait(10)

        do_HEAD = do_GET = do_PUT = do_POST = _reply

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


# --- CloudFormation --------------------------------------------------------------------------


def fake_aws_env(config_dir: Path, s3_endpoint: str) -> dict[str, str]:
    """Dummy credentials in us-east-1, S3 at ``s3_endpoint``, no user AWS config, no proxy
    for loopback: what the handler's tests run with."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config_dir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def moto_client(endpoint: str, *buckets: str) -> Any:
    """A test-side S3 client on moto (explicit settings, no env, one attempt) with ``buckets``
    created."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, proxies={}),
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return client


def no_network_env(home: Path, drop_prefixes: tuple[str, ...] = ("AWS_",)) -> dict[str, str]:
    """This process's environment without ``drop_prefixes`` variables, ``HOME`` in ``home``,
    and proxies that lead to a closed port: a tool run with it cannot reach the network."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.update(
        HOME=str(home),
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        NO_PROXY="",
        no_proxy="",
    )
    return env


def load_cfn(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, short tags included (the local stack's reader)."""
    from mnist_lambda.local_stack.cfn_template import load_template

    return load_template(path)


# --- Packaging -------------------------------------------------------------------------------


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_packages(lock_path: Path = ROOT / "poetry.lock") -> dict[str, dict[str, Any]]:
    """``{normalized name: {"version": str, "files": [file names]}}`` from poetry.lock."""
    data = tomllib.loads(lock_path.read_text())
    return {
        normalize(pkg["name"]): {
            "version": pkg["version"],
            "files": [f["file"] for f in pkg.get("files", [])],
        }
        for pkg in data["package"]
    }


def requirement_pins(path: Path = LAMBDA_APP / "requirements.txt") -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of a requirements file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's .dockerignore ``patterns`` keep ``path`` out of the build context.

    Docker's rules, reduced to what this repo uses: the last matching pattern wins, ``!``
    re-includes, a pattern matching a folder also matches everything under it, ``*`` stays
    within one path segment and ``**`` spans any number of them.
    """
    ignored = False
    parts = path.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = _glob_regex(pattern.strip("/"))
        prefixes = ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignore_patterns(path: Path = ROOT / ".dockerignore") -> list[str]:
    """The patterns of a .dockerignore file (comments and blank lines dropped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
