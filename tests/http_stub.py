"""Local HTTP stand-ins: a port nobody listens on, and a stub server with fixed replies."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


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
