"""``mnist-lambda serve ...`` as a subprocess the tests drive."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class ServeProcess:
    """``mnist-lambda serve ...`` as a subprocess; ``info`` is its ready JSON."""

    def __init__(self, args: list[str], stderr_path: Path, timeout: float = 30.0) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_lambda.cli", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.info: dict[str, Any] = json.loads(self._read_line(timeout))

    def _read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            if not sel.select(max(0.0, deadline - time.monotonic())):
                self.kill()
                raise TimeoutError(f"no ready line; stderr:\n{self.stderr_text()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                self.wait(5)
                raise RuntimeError(f"serve exited ({self.proc.returncode}):\n{self.stderr_text()}")
            line += chunk
        return line.decode()

    def stderr_text(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        """Last-resort cleanup: the supervisor's process group (its children die with it)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait(10)
