"""The Docker-free local serverless stack: S3 (moto) + Lambda (aws-lambda-rie) + API Gateway.

This module is the client side, for a notebook, ``predict-batch``, ``bench`` or a test. It
imports nothing of the server (``mnist-lambda serve``: :mod:`.supervisor` and the modules it
runs), and no server module imports it; the two share only :mod:`.protocol`. :func:`start` runs
the server detached (``python -m mnist_lambda.cli serve``: a process, not an import) and every
function finds it again through ``<state_dir>/local_stack.json`` (its log is
``<state_dir>/local_stack.log``)::

    info = local_stack.start(Path("outputs/stack"))
    local_stack.s3_client(info).upload_file("digits.npy", info.bucket, "digits.npy")
    requests.post(info.predict_url, json={"bucket": info.bucket, "key": "digits.npy"})
    local_stack.redeploy(Path("outputs/stack"))  # next request is a cold start
    local_stack.stop(Path("outputs/stack"))
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
from dataclasses import dataclass, field, fields
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import psutil

from mnist_lambda.client import EndpointAuth
from mnist_lambda.local_stack.protocol import (
    DEFAULT_BUCKET,
    LOG_FILE_NAME,
    STATE_FILE_NAME,
    DeployRequest,
    make_s3_client,
)
from mnist_lambda.template import auth_parameters, template_path
from mnist_lambda.template.reader import function_settings

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # supervisors started by this process


@dataclass(frozen=True)
class StackInfo:
    """A running local stack, as its ready line (and state file) describes it."""

    predict_url: str
    s3_url: str
    bucket: str
    region: str
    pid: int
    instances: int
    generation: int
    state_file: Path
    s3_credentials: Mapping[str, str] = field(default_factory=dict)  # an S3 administrator's keys
    function_credentials: Mapping[str, str] = field(default_factory=dict)  # the function's keys
    auth: Mapping[str, Any] = field(default_factory=dict)  # the API's auth and its callers
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
        """``MemorySize`` of the (first) function, from the template."""
        functions = self.raw.get("functions") or {}
        return int(next(iter(functions.values()))["memory_size"]) if functions else 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], state_file: Path) -> StackInfo:
        """Build from the ready JSON."""
        log_file = state_file.with_name(LOG_FILE_NAME)
        names = {f.name for f in fields(cls)} - {"state_file", "log_file", "raw", "emulator_pids"}
        return cls(
            **{k: data[k] for k in names if k in data},
            emulator_pids=tuple(data.get("emulator_pids", ())),
            state_file=state_file,
            log_file=log_file if log_file.exists() else None,
            raw=dict(data),
        )


def s3_client(info: StackInfo) -> Any:
    """A boto3 S3 client for the stack's S3, signed with its administrator's credentials."""
    return make_s3_client(info.s3_url, info.region, info.s3_credentials)


def endpoint_auth(info: StackInfo, caller: str = "allowed") -> EndpointAuth | None:
    """How a client authenticates to the stack's API: SigV4 with the keys of its ``allowed``
    (or ``denied``) caller, or its (first) API key; None when the API is public."""
    kind = info.auth.get("type", "NONE")
    if kind == "AWS_IAM":
        return EndpointAuth.iam(info.region, dict(info.auth["callers"][caller]))
    if kind == "API_KEY":
        return EndpointAuth.key(info.auth["api_keys"][0]["value"])
    return None


USAGE_PLAN_UNLIMITED = {"UsagePlanRateLimit": "10000", "UsagePlanBurstLimit": "5000"}
"""With an API key, what a measurement lifts the usage plan to (as it lifts the stage's
throttle): a sweep or a benchmark measures the function, not the plan's 5 requests/s."""


def auth_start_kwargs(
    auth: str = "none", extra_args: Sequence[str] = (), *, unlimited_plan: bool = False
) -> dict[str, Any]:
    """:func:`start`'s ``template`` and ``extra_args`` for a stack behind ``auth`` (a key of
    :data:`mnist_lambda.template.AUTH_TYPES`): ``auth``'s template and ``extra_args`` followed by
    the parameters that choose its auth as ``-P Name=Value``; with ``unlimited_plan``, an API
    key's usage plan lifted to :data:`USAGE_PLAN_UNLIMITED`. Its callers authenticate with
    :func:`endpoint_auth`."""
    parameters = auth_parameters(auth)
    if unlimited_plan and auth == "api_key":
        parameters |= USAGE_PLAN_UNLIMITED
    settings = [a for k, v in parameters.items() for a in ("-P", f"{k}={v}")]
    return {"template": template_path(auth), "extra_args": [*extra_args, *settings]}


def _load(state_file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def _alive(data: Mapping[str, Any]) -> bool:
    pid = int(data["pid"])
    if pid in _CHILDREN and _CHILDREN[pid].poll() is not None:
        del _CHILDREN[pid]  # reaped
    try:
        proc = psutil.Process(pid)
        started = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
    recorded = data.get("pid_start_time")
    return not zombie and (recorded is None or abs(started - recorded) < 1)  # pid not reused


def read(state_dir: Path) -> StackInfo | None:
    """The stack recorded in ``state_dir``, or None if there is none or it is not running."""
    state_file = Path(state_dir) / STATE_FILE_NAME
    if (data := _load(state_file)) is None or not _alive(data):
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
    s3_host: str = "",
    extra_args: Sequence[str] = (),
) -> StackInfo:
    """Start a detached stack recorded in ``state_dir``, or return the one running there whatever
    the arguments. ``s3_host``: where S3 listens (default 127.0.0.1; the Docker bridge's gateway
    for a function in a container). ``extra_args`` go to ``mnist-lambda serve`` as they are."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file, log_file = state_dir / STATE_FILE_NAME, state_dir / LOG_FILE_NAME
    with open(state_dir / ".local_stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (existing := read(state_dir)) is not None:
            return existing
        state_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "mnist_lambda.cli", "serve", "--state-file", str(state_file)]
        cmd += ["--instances", str(instances), "--bucket", bucket]
        cmd += ["--port", str(port), "--s3-port", str(s3_port)]
        cmd += ["--s3-host", s3_host] if s3_host else []
        paths = {"--app-dir": app_dir, "--template": template, "--model-path": model_path}
        for flag, path in paths.items():
            if path is not None:
                cmd += [flag, str(Path(path).resolve())]
        cmd += list(extra_args)
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=DEVNULL, stdout=DEVNULL, stderr=log, start_new_session=True
            )
        _CHILDREN[proc.pid] = proc
        return _wait_ready(proc, state_file, log_file, timeout)


def _wait_ready(
    proc: subprocess.Popen[bytes], state_file: Path, log_file: Path, timeout: float
) -> StackInfo:
    """The stack ``proc`` records in ``state_file`` once it is ready; raise if it exits first
    or is not ready after ``timeout`` s (it is stopped then)."""
    deadline = time.monotonic() + timeout
    while True:
        if (data := _load(state_file)) is not None and data.get("pid") == proc.pid:
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


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, SIGKILL after ``timeout`` (its children get their parent-death signal)."""
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        pass
    if pid in _CHILDREN:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _CHILDREN.pop(pid).wait(5)


def stop(state_dir: Path, timeout: float = 20) -> None:
    """Stop the stack recorded in ``state_dir`` (SIGTERM, then SIGKILL); idempotent."""
    state_file = Path(state_dir) / STATE_FILE_NAME
    if (data := _load(state_file)) is not None and _alive(data):
        _terminate(int(data["pid"]), timeout)
    state_file.unlink(missing_ok=True)


def redeploy(
    state_dir: Path,
    *,
    model_path: Path | str | None = None,
    instances: int | None = None,
    parameters: Mapping[str, object] | None = None,
    timeout: float = 60,
) -> StackInfo:
    """Fresh environments (SIGHUP); return once the new generation is recorded. ``model_path``,
    ``instances`` and ``parameters`` (template overrides merged into the stack's, e.g.
    ``{"MemorySize": 512}``) are each kept until changed again; ``None``: unchanged."""
    if (info := read(state_dir)) is None:
        raise RuntimeError(f"no local stack is running in {state_dir}")
    request = DeployRequest(
        model_path=Path(model_path).resolve() if model_path is not None else None,
        instances=instances,
        parameters={k: str(v) for k, v in (parameters or {}).items()},
    )
    if not request.changes_nothing:
        request.write(state_dir)
    os.kill(info.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (current := read(state_dir)) is None:
            raise RuntimeError(f"the local stack in {state_dir} stopped during the redeploy")
        if current.generation > info.generation:
            return current
        time.sleep(0.05)
    raise TimeoutError(f"redeploy not done after {timeout} s")


def template_memory_mb(template: Path | None = None) -> int:
    """The function memory the template configures by default, in MB."""
    return function_settings(template).function.memory_size
