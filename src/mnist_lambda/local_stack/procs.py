"""Child-process plumbing: free ports, spawning children that die with us, killing sessions.

Every child (moto, each aws-lambda-rie) is started

* in its own session (``setsid``): Ctrl-C in a terminal reaches only the supervisor, which then
  shuts the children down in order, and the whole session (the RIE plus the Python runtime it
  forks) can be found and killed as a unit;
* with ``PR_SET_PDEATHSIG`` (Linux): if the supervisor is killed outright (SIGKILL, OOM), the
  kernel sends the child SIGTERM, and the RIE in turn kills its runtime. The death signal is tied
  to the *thread* that forked the child, so all children are forked by one long-lived spawner
  thread, never by short-lived request threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_LIBC: Any = None
with contextlib.suppress(OSError):
    _LIBC = ctypes.CDLL(None, use_errno=True)

_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-stack-spawner")
_PORT_LOCK = threading.Lock()
_RECENT_PORTS: list[int] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (and not handed out recently by this process)."""
    with _PORT_LOCK:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _RECENT_PORTS:
                _RECENT_PORTS.append(port)
                del _RECENT_PORTS[:-256]
                return port
    raise RuntimeError("could not find a free TCP port")


def port_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _child_setup(parent_pid: int, death_signal: int) -> None:  # runs in the child
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os._exit(1)


def spawn(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session, set to receive ``death_signal`` when this process dies."""
    parent = os.getpid()

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(cmd),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(parent, death_signal),
        )

    return _SPAWNER.submit(popen).result()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    close = raw.rindex(")")
    return [raw[: raw.index(" ")], raw[raw.index("(") : close + 1], *raw[close + 2 :].split()]


def process_state(pid: int) -> str | None:
    """The one-letter /proc state of ``pid`` ('R', 'S', 'Z', ...) or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        with contextlib.suppress(OSError):
            os.kill(pid, 0)
            return "?"  # no /proc: alive, state unknown
        return None
    return fields[2]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (guards against pid reuse)."""
    fields = _stat_fields(pid)
    return int(fields[21]) if fields is not None else None


def session_members(sid: int) -> list[int]:
    """Live pids whose session id is ``sid`` (a child started with ``start_new_session``)."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and fields[5] == str(sid) and fields[2] not in ("Z", "X"):
            members.append(int(entry))
    return members


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[2] not in ("Z", "X"):
                children.setdefault(int(fields[3]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_session(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a child started by :func:`spawn` and everything in its session.

    SIGTERM to the session leader's group first (the RIE then kills its runtime), SIGKILL to
    every remaining session member after ``timeout``; the leader is reaped.
    """
    sid = proc.pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while True:
        members = session_members(sid)
        if not members:
            break
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Wait until ``port`` accepts connections; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with {proc.returncode} before listening on port {port}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout:.0f} s")
        time.sleep(0.02)
