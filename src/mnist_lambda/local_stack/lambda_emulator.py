"""The function, run under the real AWS Lambda Runtime Interface Emulator (``aws-lambda-rie``).

One :class:`EmulatorInstance` is one RIE process with the Python runtime interface client
(``awslambdaric``) as its runtime: like one Lambda execution environment it runs one invocation
at a time, initialises lazily on its first invocation (the cold start), and is reset by the RIE
when the function times out or the runtime exits. A :class:`FunctionPool` holds ``instances`` of
them (the function's concurrency), hands each invocation to a free one, replaces instances whose
process died, and replaces all of them on a redeploy.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import logging
import os
import platform
import queue
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.cfn_template import FunctionSpec

log = logging.getLogger("mnist_lambda.local_stack.lambda")

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
LAMBDA_REQUEST_LIMIT = 6 * 1024 * 1024  # synchronous invocation payload: 6,291,456 bytes
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024 + 100  # ... and its response: 6,291,556 bytes
INVOKE_GRACE_S = 10.0  # beyond the function timeout, before an emulator counts as hung
REPORT_WAIT_S = 0.5  # how long to wait for the RIE's REPORT line after a response

_REPORT_RE = re.compile(
    r"^REPORT RequestId: (?P<id>\S+)\s+(?:Init Duration: (?P<init>[\d.]+) ms\s+)?"
    r"Duration: (?P<duration>[\d.]+) ms"
)
_INIT_RE = re.compile(r"INIT REPORT\(durationMs: (?P<ms>[\d.]+)\)")
_INVOKE_START_RE = re.compile(r"INVOKE START\(requestId: (?P<id>[^)\s]+)\)")
_RAPID_INFO_RE = re.compile(r"\[(INFO|DEBUG)\] \(rapid\)")

# What a function inherits from the supervisor's environment; everything else is Lambda's own.
_PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def find_rie() -> Path:
    """The ``aws-lambda-rie`` binary for this machine, from the installed ``aws-sam-cli``.

    pip installs it without the exec bit; it is made executable if needed.
    """
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if arch is None:
        raise RuntimeError(f"no aws-lambda-rie build for machine {platform.machine()!r}")
    spec = importlib.util.find_spec("samcli")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("aws-sam-cli is not installed: it ships the aws-lambda-rie binary")
    samcli_dir = Path(next(iter(spec.submodule_search_locations)))
    rie = samcli_dir / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not rie.is_file():
        raise RuntimeError(f"{rie} not found in the installed aws-sam-cli")
    mode = rie.stat().st_mode
    if mode & stat.S_IXUSR:
        return rie
    try:
        rie.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return rie
    except OSError:  # read-only site-packages: use an executable copy
        copy = Path(tempfile.gettempdir()) / f"mnist-lambda-{os.getuid()}" / rie.name
        if not copy.exists() or copy.stat().st_size != rie.stat().st_size:
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
            shutil.copyfile(rie, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, copy)
        return copy


def function_environment(
    spec: FunctionSpec, app_dir: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The function's environment: Lambda's reserved variables, the template's, then overrides.

    Nothing else leaks in from the supervisor (no AWS profile, no real credentials); the AWS
    config files are pointed at /dev/null so a developer's ``~/.aws`` cannot change behaviour.
    """
    env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    env.update(
        LANG="en_US.UTF-8",
        TZ=":UTC",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(spec.environment)
    env.update(
        AWS_LAMBDA_FUNCTION_NAME=spec.logical_id,
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_size),
        AWS_LAMBDA_FUNCTION_TIMEOUT=str(spec.timeout),
        AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{spec.logical_id}",
        AWS_LAMBDA_LOG_STREAM_NAME="local",
        AWS_EXECUTION_ENV=f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        LAMBDA_TASK_ROOT=str(app_dir),
        _HANDLER=spec.handler,
    )
    env.update(overrides or {})
    return env


@dataclass(frozen=True)
class InvokeResult:
    """What one invocation through the emulator returned."""

    instance: str
    status: int = 0  # the RIE's HTTP status (0: no response)
    body: bytes = b""
    function_error: str | None = None  # X-Amz-Function-Error header, if the RIE sent one
    failure: str | None = None  # the emulator died / refused / hung: no usable response
    too_large: bool = False  # response beyond Lambda's 6 MB limit
    init_ms: float | None = None  # INIT REPORT durationMs (set on a cold start)
    duration_ms: float | None = None  # REPORT Duration (the RIE counts init in it when cold)


class EmulatorInstance:
    """One ``aws-lambda-rie`` process running the function (one execution environment)."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: Mapping[str, str],
        app_dir: Path,
        *,
        index: int = 1,
        generation: int = 0,
        python: str = sys.executable,
    ) -> None:
        self.spec = spec
        self.env = dict(env)
        self.app_dir = Path(app_dir)
        self.index = index
        self.generation = generation
        self.python = python
        self.name = f"{spec.logical_id}-{index}/g{generation}"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._events: queue.SimpleQueue[tuple[str, str, float | None]] = queue.SimpleQueue()
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._stopped

    def start(self, timeout: float = 15.0) -> None:
        """Start the RIE on free ports and wait until it accepts invocations."""
        rie = find_rie()
        last_error: Exception | None = None
        for _ in range(3):
            self.port, runtime_port = procs.free_port(), procs.free_port()
            cmd = [
                str(rie),
                "--runtime-interface-emulator-address", f"{procs.HOST}:{self.port}",
                "--runtime-api-address", f"{procs.HOST}:{runtime_port}",
                self.python, "-m", "awslambdaric", self.spec.handler,
            ]  # fmt: skip
            proc = procs.spawn(cmd, env=self.env, cwd=self.app_dir)
            for stream, kind in ((proc.stdout, "out"), (proc.stderr, "err")):
                threading.Thread(
                    target=self._pump,
                    args=(stream, kind),
                    daemon=True,
                    name=f"rie-{kind}-{self.name}",
                ).start()
            try:
                procs.wait_port(self.port, proc, timeout)
            except (RuntimeError, TimeoutError) as exc:
                last_error = exc
                procs.kill_session(proc)
                continue
            self.proc = proc
            log.debug("%s: aws-lambda-rie pid %d on port %d", self.name, proc.pid, self.port)
            return
        raise RuntimeError(f"{self.name}: aws-lambda-rie did not start: {last_error}")

    def _pump(self, stream: object, kind: str) -> None:
        """Forward the RIE's output to the log and pick out its timings.

        stderr (``(rapid)`` lines) says ``INIT REPORT(durationMs: X)`` before the
        ``INVOKE START(requestId: ...)`` of the invocation that paid for that init; stdout has
        ``REPORT RequestId: ... Duration: X ms`` once the invocation is over. Both are queued
        with their request id and matched up in :meth:`invoke`.
        """
        pending_init: float | None = None
        for raw in stream:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace").rstrip()
            if kind == "out":
                found = _REPORT_RE.match(line)
                if found:
                    self._events.put(("report", found["id"], float(found["duration"])))
                log.info("[%s] %s", self.name, line)
                continue
            found = _INIT_RE.search(line)
            if found:
                pending_init = float(found["ms"])
            found = _INVOKE_START_RE.search(line)
            if found:
                self._events.put(("start", found["id"], pending_init))
                pending_init = None
            quiet = self._stopped or _RAPID_INFO_RE.search(line)  # shutdown noise
            level = logging.DEBUG if quiet else logging.WARNING
            log.log(level, "[%s] %s", self.name, line)

    def _timings(self, wait: float) -> tuple[float | None, float | None]:
        """(init ms or None, duration ms) of the invocation that just returned."""
        starts: dict[str, float | None] = {}
        reports: dict[str, float | None] = {}
        deadline = time.monotonic() + wait
        while not starts.keys() & reports.keys():
            try:
                kind, request_id, ms = self._events.get(
                    timeout=max(0.0, deadline - time.monotonic())
                )
            except queue.Empty:
                break
            (starts if kind == "start" else reports)[request_id] = ms
        both = starts.keys() & reports.keys()
        if both:
            request_id = both.pop()
            return starts[request_id], reports[request_id]
        init = next(iter(starts.values()), None)
        return init, next(iter(reports.values()), None)

    def invoke(self, payload: bytes, timeout: float) -> InvokeResult:
        """POST ``payload`` (the event JSON) to the RIE and return its response."""
        while True:  # leftovers of an earlier invocation
            try:
                self._events.get_nowait()
            except queue.Empty:
                break
        conn = http.client.HTTPConnection(procs.HOST, self.port, timeout=timeout)
        try:
            conn.request(
                "POST", INVOKE_PATH, body=payload, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            body = resp.read(LAMBDA_RESPONSE_LIMIT + 1)
            status, func_error = resp.status, resp.getheader("X-Amz-Function-Error")
        except TimeoutError:
            return InvokeResult(self.name, failure=f"no response from the emulator in {timeout} s")
        except (OSError, http.client.HTTPException) as exc:
            state = "died" if self.proc is None or self.proc.poll() is not None else "failed"
            return InvokeResult(self.name, failure=f"emulator {state}: {exc!r}")
        finally:
            conn.close()
        init_ms, duration_ms = self._timings(REPORT_WAIT_S if status == 200 else 0.05)
        return InvokeResult(
            self.name,
            status=status,
            body=body[:LAMBDA_RESPONSE_LIMIT],
            function_error=func_error,
            too_large=len(body) > LAMBDA_RESPONSE_LIMIT,
            init_ms=init_ms,
            duration_ms=duration_ms,
        )

    def stop(self) -> None:
        """Kill the RIE and its runtime (idempotent)."""
        self._stopped = True
        if self.proc is not None:
            procs.kill_session(self.proc, timeout=3.0)


class GatewayTimeout(Exception):
    """No answer (or no free instance) before the integration timeout."""


class FunctionPool:
    """``instances`` emulators of one function: dispatch, replacement, redeploy."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: Mapping[str, str],
        app_dir: Path,
        instances: int = 1,
        *,
        python: str = sys.executable,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be >= 1")
        self.spec = spec
        self.env = dict(env)
        self.app_dir = Path(app_dir)
        self.instances = instances
        self.python = python
        self.on_change = on_change
        self.generation = 0
        # LIFO: like Lambda, reuse the most recently used (warm) environment first.
        self._free: queue.LifoQueue[EmulatorInstance] = queue.LifoQueue()
        self._live: set[EmulatorInstance] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _new(self, index: int, generation: int) -> EmulatorInstance:
        inst = EmulatorInstance(
            self.spec,
            self.env,
            self.app_dir,
            index=index,
            generation=generation,
            python=self.python,
        )
        with self._lock:
            self._live.add(inst)
        try:
            inst.start()
            if self._closed:
                raise RuntimeError("pool closed")
        except Exception:
            self._discard(inst)
            raise
        return inst

    def _discard(self, inst: EmulatorInstance) -> None:
        inst.stop()
        with self._lock:
            self._live.discard(inst)

    def _start_generation(self, generation: int) -> list[EmulatorInstance]:
        started: list[EmulatorInstance] = []
        try:
            for index in range(1, self.instances + 1):
                started.append(self._new(index, generation))
        except Exception:
            for inst in started:
                self._discard(inst)
            raise
        return started

    def start(self) -> None:
        """Start the first generation of instances."""
        for inst in self._start_generation(self.generation):
            self._free.put(inst)
        log.info(
            "%s: %d instance(s) of %s (timeout %d s, %d MB)",
            self.spec.logical_id,
            self.instances,
            self.spec.handler,
            self.spec.timeout,
            self.spec.memory_size,
        )

    def pids(self) -> list[int]:
        """Pids of the live RIE processes."""
        with self._lock:
            return sorted(i.pid for i in self._live if i.pid is not None and i.alive())

    def acquire(self, timeout: float) -> EmulatorInstance | None:
        """A free, live instance of the current generation, or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return None
            try:
                inst = self._free.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if inst.generation != self.generation:
                self._retire(inst)
            elif not inst.alive():
                log.warning("%s: emulator process gone; replacing it", inst.name)
                self._replace(inst)
            else:
                return inst

    def reap_dead(self) -> None:
        """Replace idle instances whose process died (a crashed execution environment)."""
        with self._free.mutex:
            dead = [i for i in self._free.queue if not i.alive()]
            for inst in dead:
                self._free.queue.remove(inst)
        for inst in dead:
            log.warning("%s: emulator process gone; replacing it", inst.name)
            self._replace(inst)

    def release(self, inst: EmulatorInstance, healthy: bool = True) -> None:
        """Give an instance back after an invocation; broken ones are replaced."""
        if self._closed:
            self._discard(inst)
        elif inst.generation != self.generation:
            self._retire(inst)
        elif healthy and inst.alive():
            self._free.put(inst)
        else:
            self._replace(inst)

    def _retire(self, inst: EmulatorInstance) -> None:
        threading.Thread(target=self._discard, args=(inst,), daemon=True).start()

    def _replace(self, inst: EmulatorInstance) -> None:
        """Kill ``inst`` and put a fresh instance in its place, in the background."""

        def run() -> None:
            self._discard(inst)
            for attempt in range(5):
                if self._closed or inst.generation != self.generation:
                    return
                try:
                    fresh = self._new(inst.index, inst.generation)
                except Exception as exc:
                    log.error("%s: replacement failed (%s); retrying", inst.name, exc)
                    time.sleep(0.5 * (attempt + 1))
                    continue
                log.info("%s: replaced (new pid %s)", fresh.name, fresh.pid)
                self.release(fresh)
                if self.on_change is not None:
                    self.on_change()
                return
            log.error("%s: could not be replaced; the pool is one instance short", inst.name)

        threading.Thread(target=run, daemon=True, name=f"replace-{inst.name}").start()

    def redeploy(self) -> int:
        """Replace every instance by a fresh one (cold on its next invocation).

        Idle old instances are stopped at once, busy ones when their invocation ends.
        Returns the new generation.
        """
        fresh = self._start_generation(self.generation + 1)
        with self._lock:
            self.generation += 1
        old = []
        while True:
            try:
                old.append(self._free.get_nowait())
            except queue.Empty:
                break
        for inst in fresh:
            self._free.put(inst)
        for inst in old:
            if inst.generation != self.generation:
                self._retire(inst)
            else:
                self._free.put(inst)
        log.info("%s: redeployed, generation %d", self.spec.logical_id, self.generation)
        return self.generation

    def invoke(self, payload: bytes, deadline: float) -> InvokeResult:
        """Invoke on a free instance; raise :class:`GatewayTimeout` at ``deadline``.

        The invocation itself runs in a worker thread: when the gateway gives up, the instance
        stays busy until the function returns or times out, as a Lambda environment does.
        """
        inst = self.acquire(deadline - time.monotonic())
        if inst is None:
            raise GatewayTimeout("no free function instance")
        done = threading.Event()
        box: list[InvokeResult] = []

        def work() -> None:
            healthy = False
            try:
                result = inst.invoke(payload, timeout=self.spec.timeout + INVOKE_GRACE_S)
                healthy = result.failure is None
                box.append(result)
            finally:
                self.release(inst, healthy)
                done.set()

        threading.Thread(target=work, daemon=True, name=f"invoke-{inst.name}").start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise GatewayTimeout(f"{inst.name} still running")
        if not box:
            return InvokeResult(inst.name, failure="invocation crashed")
        return box[0]

    def close(self) -> None:
        """Stop every instance, idle or busy."""
        self._closed = True
        with self._lock:
            live = list(self._live)
        stoppers = [threading.Thread(target=self._discard, args=(i,), daemon=True) for i in live]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(10)
        with contextlib.suppress(queue.Empty):
            while True:
                self._free.get_nowait()
