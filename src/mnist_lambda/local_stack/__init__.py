"""The Docker-free local serverless stack: S3 (moto) + Lambda (aws-lambda-rie) + API Gateway.

From a shell: ``mnist-lambda serve`` (see :func:`serve_main`). From a notebook::

    info = local_stack.start(Path("outputs/stack"))
    local_stack.s3_client(info).upload_file("digits.npy", info.bucket, "digits.npy")
    requests.post(info.predict_url, json={"bucket": info.bucket, "key": "digits.npy"})
    local_stack.redeploy(Path("outputs/stack"))  # next request is a cold start
    local_stack.stop(Path("outputs/stack"))

The notebook functions run the supervisor detached (``python -m mnist_lambda.local_stack``) and
find it again through ``<state_dir>/local_stack.json``; its log is ``<state_dir>/local_stack.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.supervisor import DEFAULT_BUCKET, serve_main

__all__ = [
    "STATE_FILE_NAME",
    "StackInfo",
    "read",
    "redeploy",
    "s3_client",
    "serve_main",
    "start",
    "stop",
    "template_memory_mb",
]

STATE_FILE_NAME = "local_stack.json"
LOG_FILE_NAME = "local_stack.log"

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # supervisors started by this process


@dataclass(frozen=True)
class StackInfo:
    """A running local stack, as recorded in its state file."""

    predict_url: str
    s3_url: str
    bucket: str
    region: str
    pid: int
    instances: int
    generation: int
    state_file: Path
    api_url: str = ""
    stage: str = ""
    port: int = 0
    s3_port: int = 0
    emulator_pids: tuple[int, ...] = ()
    s3_pid: int | None = None
    log_file: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def memory_mb(self) -> int:
        """Memory of the (first) function, from the template, as Lambda would bill it."""
        functions = self.raw.get("functions") or {}
        return int(next(iter(functions.values()))["memory_size"]) if functions else 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], state_file: Path) -> StackInfo:
        """Build from the ready JSON."""
        log_file = state_file.with_name(LOG_FILE_NAME)
        return cls(
            predict_url=data["predict_url"],
            s3_url=data["s3_url"],
            bucket=data["bucket"],
            region=data["region"],
            pid=int(data["pid"]),
            instances=int(data["instances"]),
            generation=int(data["generation"]),
            state_file=state_file,
            api_url=data.get("api_url", ""),
            stage=data.get("stage", ""),
            port=int(data.get("port", 0)),
            s3_port=int(data.get("s3_port", 0)),
            emulator_pids=tuple(data.get("emulator_pids", ())),
            s3_pid=data.get("s3_pid"),
            log_file=log_file if log_file.exists() else None,
            raw=dict(data),
        )


def template_memory_mb(template: Path | None = None) -> int:
    """The function memory ``template_no_auth.yaml`` configures by default, in MB."""
    from mnist_lambda.local_stack.cfn_template import load_stack_spec
    from mnist_lambda.paths import project_root

    spec = load_stack_spec(template or project_root() / "template_no_auth.yaml")
    return next(iter(spec.functions.values())).memory_size


def _load(state_file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def _alive(data: Mapping[str, Any]) -> bool:
    pid = int(data["pid"])
    _reap(pid)
    if not procs.pid_alive(pid):
        return False
    ticks = data.get("pid_start_ticks")
    return ticks is None or procs.start_ticks(pid) in (None, ticks)  # pid not reused


def read(state_dir: Path) -> StackInfo | None:
    """The stack recorded in ``state_dir``, or None if there is none or it is not running."""
    state_file = Path(state_dir) / STATE_FILE_NAME
    data = _load(state_file)
    if data is None or not _alive(data):
        return None
    return StackInfo.from_dict(data, state_file)


def _log_tail(log_file: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    return ""


def start(
    state_dir: Path,
    *,
    instances: int = 1,
    bucket: str = DEFAULT_BUCKET,
    app_dir: Path | None = None,
    template: Path | None = None,
    timeout: float = 60,
    model_path: Path | None = None,
    port: int = 0,
    s3_port: int = 0,
    extra_args: Sequence[str] = (),
) -> StackInfo:
    """Start a detached stack recorded in ``state_dir`` (or return the live one already there).

    ``extra_args`` are passed to ``mnist-lambda serve`` as they are (e.g.
    ``["--integration-timeout", "5"]``). A stack already running in ``state_dir`` is returned
    as it is, whatever the arguments.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / STATE_FILE_NAME
    log_file = state_dir / LOG_FILE_NAME
    with open(state_dir / ".local_stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = read(state_dir)
        if existing is not None:
            return existing
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()
        cmd = [
            sys.executable,
            "-m",
            "mnist_lambda.local_stack",
            "--state-file",
            str(state_file),
            "--instances",
            str(instances),
            "--bucket",
            bucket,
            "--port",
            str(port),
            "--s3-port",
            str(s3_port),
        ]
        if app_dir is not None:
            cmd += ["--app-dir", str(Path(app_dir).resolve())]
        if template is not None:
            cmd += ["--template", str(Path(template).resolve())]
        if model_path is not None:
            cmd += ["--model-path", str(Path(model_path).resolve())]
        cmd += list(extra_args)
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        deadline = time.monotonic() + timeout
        while True:
            data = _load(state_file)
            if data is not None and data.get("pid") == proc.pid:
                return StackInfo.from_dict(data, state_file)
            if proc.poll() is not None:
                raise RuntimeError(
                    f"local stack exited with {proc.returncode} while starting; "
                    f"{log_file}:\n{_log_tail(log_file)}"
                )
            if time.monotonic() > deadline:
                _terminate(proc.pid, 10)
                raise TimeoutError(
                    f"local stack not ready after {timeout} s; {log_file}:\n{_log_tail(log_file)}"
                )
            time.sleep(0.05)


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, SIGKILL after ``timeout``; True if it stopped in time."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not procs.pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # its children get their parent-death signal
    if pid in _CHILDREN:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _CHILDREN.pop(pid).wait(5)
    return False


def stop(state_dir: Path, timeout: float = 20) -> None:
    """Stop the stack recorded in ``state_dir`` (SIGTERM, then SIGKILL); idempotent."""
    state_file = Path(state_dir) / STATE_FILE_NAME
    data = _load(state_file)
    if data is not None and _alive(data):
        _terminate(int(data["pid"]), timeout)
    with contextlib.suppress(FileNotFoundError):
        state_file.unlink()


def redeploy(state_dir: Path, timeout: float = 60) -> StackInfo:
    """Replace the function instances (SIGHUP); return once the new generation is recorded."""
    info = read(state_dir)
    if info is None:
        raise RuntimeError(f"no local stack is running in {state_dir}")
    os.kill(info.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = read(state_dir)
        if current is None:
            raise RuntimeError(f"the local stack in {state_dir} stopped during the redeploy")
        if current.generation > info.generation:
            return current
        time.sleep(0.05)
    raise TimeoutError(f"redeploy not done after {timeout} s")


def s3_client(info: StackInfo) -> Any:
    """A boto3 S3 client for the stack's moto endpoint (dummy credentials, its region)."""
    from mnist_lambda.local_stack.s3_server import make_s3_client

    return make_s3_client(info.s3_url, info.region)
