"""Child processes: free ports, spawning children that die with us, killing process trees.

Every child (moto, each execution environment) is started in its own session, so Ctrl-C in a
terminal reaches only the supervisor, which stops the children in order; and with
``PR_SET_PDEATHSIG``, so the kernel sends it SIGTERM if the supervisor is killed outright. The
death signal is tied to the *thread* that forked the child, so all children are forked by one
long-lived spawner thread, never by short-lived request threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-stack-spawner")


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` (127.0.0.1) that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _child_setup(parent_pid: int) -> None:  # runs in the child
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os._exit(1)


def spawn(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    stderr: int = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session (output piped), set to get SIGTERM when this process dies."""
    return _SPAWNER.submit(
        subprocess.Popen,
        list(cmd),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=functools.partial(_child_setup, os.getpid()),
    ).result()


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(pid: int) -> list[int]:
    """The pids of the live descendants of ``pid``."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def session_members(sid: int) -> list[psutil.Process]:
    """The live processes of session ``sid`` (a child started by :func:`spawn` leads one),
    orphans included: a runtime whose emulator was killed is still found."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def kill_tree(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a child started by :func:`spawn` and everything in its session, and reap it:
    SIGTERM to its process group first, SIGKILL to whatever is left after ``timeout``."""
    family = [p for p in session_members(proc.pid) if p.pid != proc.pid]
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    _, alive = psutil.wait_procs(family, timeout=0.1)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=timeout)
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, host: str = HOST) -> None:
    """Wait until ``host:port`` accepts connections; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not port_open(port, host):
        if proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with {proc.returncode} before listening on port {port}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.02)
