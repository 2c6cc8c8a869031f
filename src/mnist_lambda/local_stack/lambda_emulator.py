"""The function, run under the real AWS Lambda Runtime Interface Emulator (``aws-lambda-rie``).

An :class:`EmulatorInstance` is one execution environment: the RIE with ``awslambdaric`` as its
runtime, in a :class:`~.sandbox.Sandbox`. Like Lambda's, it runs one invocation at a time, is
initialised on the first (the cold start) and is discarded once its runtime died. A
:class:`FunctionPool` holds ``instances`` of them (the concurrency) on one staged copy of the
app per deployment, described by one :class:`~.environment.EnvironmentSpec` that each of them
is given, and replaces them all on a redeploy.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import importlib.util
import itertools
import logging
import os
import platform
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mnist_lambda.aws_limits import LAMBDA_RESPONSE_BYTES
from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.environment import EnvironmentSpec
from mnist_lambda.local_stack.invocation import FunctionThrottled, GatewayTimeout, InvokeResult
from mnist_lambda.local_stack.sandbox import Sandbox
from mnist_lambda.local_stack.snapstart import SnapshotEnvironment
from mnist_lambda.local_stack.task_root import build, stage_app
from mnist_lambda.modeling import model_requirements
from mnist_lambda.template.reader import FunctionSpec

log = logging.getLogger("mnist_lambda.local_stack.lambda")

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
INVOKE_GRACE_S = 10.0  # beyond the function timeout, before an emulator counts as hung
REPORT_WAIT_S = 0.5  # how long to wait for the RIE's REPORT line after a response

_REPORT_RE = re.compile(
    r"^REPORT RequestId: \S+\s+(?:Init Duration: [\d.]+ ms\s+)?Duration: (?P<duration>[\d.]+) ms"
)
_INIT_RE = re.compile(r"INIT REPORT\(durationMs: (?P<ms>[\d.]+)\)")
_RAPID_INFO_RE = re.compile(r"\[(INFO|DEBUG)\] \(rapid\)")
_ENVIRONMENTS = itertools.count(1)


def find_rie() -> Path:
    """The ``aws-lambda-rie`` binary in the installed ``aws-sam-cli`` (pip drops its exec bit)."""
    arch = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine())
    spec = importlib.util.find_spec("samcli")
    if arch is None or spec is None or spec.origin is None:
        raise RuntimeError(f"no aws-lambda-rie for {platform.machine()} (aws-sam-cli installed?)")
    rie = Path(spec.origin).parent / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not os.access(rie, os.X_OK):
        rie.chmod(rie.stat().st_mode | 0o111)
    return rie


class EmulatorInstance:
    """One execution environment: an ``aws-lambda-rie`` process and the runtime it starts."""

    def __init__(
        self, spec: EnvironmentSpec, index: int, snapshot: SnapshotEnvironment | None = None
    ) -> None:
        self.spec, self.index, self.generation = spec, index, spec.generation
        self.name = f"{spec.function.logical_id}-{index}/g{spec.generation}"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.runtime_pid: int | None = None  # known once it has been initialised
        self.snapshot = snapshot  # SnapStart: restored from it
        joinable = snapshot is not None
        self.limits = spec.limits(f"env-{next(_ENVIRONMENTS)}", joinable=joinable)
        self._init_ms: float | None = None
        self._reports: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._stopped = False

    def alive(self) -> bool:
        """The RIE runs and, once initialised, so does its runtime (else it is discarded)."""
        if self._stopped or self.proc is None or self.proc.poll() is not None:
            return False
        return self.runtime_pid is None or procs.pid_alive(self.runtime_pid)

    def start(self, timeout: float = 15.0) -> None:
        """Start the RIE in its sandbox on free ports; wait until it accepts invocations."""
        rie = find_rie()
        runtime = "restore" if self.snapshot else "awslambdaric"
        env = self.snapshot.restore_environment(self.limits) if self.snapshot else {}
        for _ in range(3):
            self.port = procs.free_port()
            rie_args = ["--runtime-interface-emulator-address", f"{procs.HOST}:{self.port}"]
            rie_args += ["--runtime-api-address", f"{procs.HOST}:{procs.free_port()}"]
            proc = self.spec.spawn(self.limits, rie=(rie, rie_args), runtime=runtime, env=env)
            for stream, kind in ((proc.stdout, "out"), (proc.stderr, "err")):
                threading.Thread(
                    target=self._pump, args=(stream, kind), daemon=True, name=f"rie-{self.name}"
                ).start()
            try:
                procs.wait_port(self.port, proc, timeout)
                break
            except (RuntimeError, TimeoutError) as exc:
                procs.kill_tree(proc)
                error = exc
        else:
            raise RuntimeError(f"{self.name}: aws-lambda-rie did not start: {error}")
        self.proc = proc
        log.debug("%s: aws-lambda-rie pid %d on port %d", self.name, proc.pid, self.port)

    def _pump(self, stream: object, kind: str) -> None:
        """Log the RIE's output; note its ``INIT REPORT`` (stderr) and each ``REPORT`` (stdout)."""
        for raw in stream:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace").rstrip()
            if kind == "out":
                if found := _REPORT_RE.match(line):
                    self._reports.put(float(found["duration"]))
                log.info("[%s] %s", self.name, line)
                continue
            if found := _INIT_RE.search(line):
                self._init_ms = float(found["ms"])
            quiet = self._stopped or _RAPID_INFO_RE.search(line)  # shutdown noise
            log.log(logging.DEBUG if quiet else logging.WARNING, "[%s] %s", self.name, line)

    def invoke(self, payload: bytes, timeout: float) -> InvokeResult:
        """POST ``payload`` (the event JSON) to the RIE and return its response."""
        with contextlib.suppress(queue.Empty):
            while True:  # leftovers of an earlier invocation
                self._reports.get_nowait()
        oom_before = self.limits.oom_kills() if self.limits else 0
        conn = http.client.HTTPConnection(procs.HOST, self.port, timeout=timeout)
        try:
            conn.request(
                "POST", INVOKE_PATH, body=payload, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            body = resp.read(LAMBDA_RESPONSE_BYTES + 1)
            status, func_error = resp.status, resp.getheader("X-Amz-Function-Error")
        except TimeoutError:
            return InvokeResult(self.name, failure=f"no response from the emulator in {timeout} s")
        except (OSError, http.client.HTTPException) as exc:
            state = "died" if self.proc is None or self.proc.poll() is not None else "failed"
            return InvokeResult(self.name, failure=f"emulator {state}: {exc!r}")
        finally:
            conn.close()
        if self.limits and self.limits.oom_kills() > oom_before:
            self.runtime_pid = self.runtime_pid or -1  # never reused
            oom = f"went over MemorySize {self.spec.function.memory_size} MB and was killed"
            return InvokeResult(self.name, failure=f"Runtime.OutOfMemory: the environment {oom}")
        runtimes = procs.descendants(self.proc.pid) if self.proc is not None else []
        self.runtime_pid = runtimes[0] if runtimes else None  # None: the RIE reset it
        try:
            duration_ms = self._reports.get(timeout=REPORT_WAIT_S if status == 200 else 0.05)
        except queue.Empty:
            duration_ms = None
        init_ms, self._init_ms = self._init_ms, None  # an INIT since the last call: cold
        return InvokeResult(
            self.name,
            status=status,
            body=body[:LAMBDA_RESPONSE_BYTES],
            function_error=func_error,
            too_large=len(body) > LAMBDA_RESPONSE_BYTES,
            cold=init_ms is not None,
            restored=init_ms is not None and self.snapshot is not None,
            init_ms=init_ms,
            duration_ms=duration_ms,
            max_memory_mb=self.limits.max_memory_mb() if self.limits else None,
        )

    def stop(self) -> None:
        """Kill the RIE and its runtime, and remove its cgroups (idempotent)."""
        self._stopped = True
        if self.proc is not None:
            procs.kill_tree(self.proc, timeout=3.0)
        if self.limits is not None:
            self.limits.remove()


class FunctionPool:
    """``instances`` environments of one function: dispatch, replacement, redeploy. Each
    deployment (generation) stages ``app_dir`` once, with ``model_path`` (if any) as its model,
    and hands its environments one :class:`.EnvironmentSpec`."""

    def __init__(
        self,
        function: FunctionSpec,
        env: Mapping[str, str],
        app_dir: Path,
        instances: int = 1,
        *,
        sandbox: Sandbox | None = None,
        model_path: Path | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if instances < 0:
            raise ValueError("instances must be >= 0")
        self.function, self.env, self.instances = function, dict(env), instances
        self.app_dir, self.model_path, self.on_change = Path(app_dir), model_path, on_change
        self.generation = -1
        self.own_sandbox = sandbox is None
        self.sandbox = sandbox or Sandbox(build(self.app_dir / "requirements.txt"))
        self._work = Path(tempfile.mkdtemp(prefix=f"mnist-lambda-{function.logical_id}-"))
        self._free: queue.LifoQueue[EmulatorInstance] = queue.LifoQueue()  # LIFO, as on Lambda
        self._live: set[EmulatorInstance] = set()
        self.snapshots: dict[int, SnapshotEnvironment] = {}  # generation -> its SnapStart one
        self._lock = threading.Lock()
        self._workers = concurrent.futures.ThreadPoolExecutor(64)  # threads start as needed
        self._closed = False

    def _new(self, spec: EnvironmentSpec, index: int) -> EmulatorInstance:
        inst = EmulatorInstance(spec, index, self.snapshots.get(spec.generation))
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

    def _stage(
        self,
        generation: int,
        function: FunctionSpec,
        env: Mapping[str, str],
        model_path: Path | None,
    ) -> EnvironmentSpec:
        """Stage the app for ``generation``, with its model and that model's requirements."""
        dest, python = self._work / f"g{generation}", self.sandbox.build.python
        app = stage_app(self.app_dir, dest, python, model_path)
        model_reqs = app / "model" / model_requirements.FILE_NAME  # an ONNX model's runtime
        deps = build(self.app_dir / "requirements.txt", None, model_reqs).deps_dir
        return EnvironmentSpec(function, generation, app, deps, self.sandbox, env)

    def _start_generation(self, spec: EnvironmentSpec, size: int) -> list[EmulatorInstance]:
        """Start ``size`` environments of ``spec`` (after its snapshot, with SnapStart)."""
        started: list[EmulatorInstance] = []
        if spec.function.snap_start and size:  # a published version: init once, snapshot
            snapshot = SnapshotEnvironment(spec)
            snapshot.start()
            self.snapshots[spec.generation] = snapshot
        try:
            for index in range(1, size + 1):
                started.append(self._new(spec, index))
        except Exception:
            for inst in started:
                self._discard(inst)
            self._stop_snapshots(keep=self.generation)
            raise
        return started

    def _stop_snapshots(self, keep: int | None = None) -> None:
        for generation in [g for g in self.snapshots if g != keep]:
            self.snapshots.pop(generation).stop()

    def start(self) -> None:
        """Start the first generation of environments (generation 0)."""
        self.redeploy()

    @property
    def size(self) -> int:
        """Environments per generation: the reserved concurrency if the template sets one (a
        request beyond it is throttled, as Lambda does), else ``instances`` (a request beyond
        them waits for a free one: Lambda would start another); 0 until something is deployed."""
        return _environments(self.function, self.instances)

    def spec_summary(self) -> dict[str, object]:
        """What the ready line says of the function."""
        keys = ("handler", "timeout", "memory_size", "reserved_concurrency")
        return {k: getattr(self.function, k) for k in keys} | {"environments": self.size}

    def pids(self) -> list[int]:
        """Pids of the live RIE processes."""
        with self._lock:
            return sorted(i.proc.pid for i in self._live if i.proc is not None and i.alive())

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
            if inst.generation == self.generation and inst.alive():
                return inst
            self.release(inst)  # an old or dead one: retired or replaced

    def reap_dead(self) -> None:
        """Replace idle environments whose runtime died (a crashed execution environment)."""
        with self._free.mutex:
            dead = [i for i in self._free.queue if not i.alive()]
            self._free.queue[:] = [i for i in self._free.queue if i not in dead]
        for inst in dead:
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

    def _retire(self, inst: EmulatorInstance) -> threading.Thread:
        thread = threading.Thread(target=self._discard, args=(inst,), daemon=True)
        thread.start()
        return thread

    def _replace(self, inst: EmulatorInstance) -> None:
        """Discard ``inst`` and start a fresh environment in its place, in the background."""
        log.warning("%s: runtime gone; a new environment replaces it", inst.name)

        def run() -> None:
            self._discard(inst)
            for attempt in range(1, 6):
                if self._closed or inst.generation != self.generation:
                    return
                try:
                    self.release(self._new(inst.spec, inst.index))
                    return self.on_change() if self.on_change else None
                except Exception as exc:
                    log.error("%s: replacement failed (%s); retrying", inst.name, exc)
                    time.sleep(0.5 * attempt)

        threading.Thread(target=run, daemon=True, name=f"replace-{inst.name}").start()

    def redeploy(
        self,
        function: FunctionSpec | None = None,
        env: Mapping[str, str] | None = None,
        *,
        instances: int | None = None,
        model_path: Path | None = None,
    ) -> int:
        """Replace every instance by a fresh one (cold on its next invocation), with the given
        settings (None: unchanged) once it started; return the new generation. Idle old
        instances are stopped at once, busy ones when their call ends."""
        function, model_path = function or self.function, model_path or self.model_path
        env = dict(env) if env is not None else self.env
        instances = self.instances if instances is None else instances
        if instances < 0:
            raise ValueError("instances must be >= 0")
        spec = self._stage(self.generation + 1, function, env, model_path)
        fresh = self._start_generation(spec, _environments(function, instances))
        with self._lock:
            self.function, self.env, self.instances = function, env, instances
            self.model_path, self.generation = model_path, spec.generation
        with self._free.mutex:  # every idle one is of an older generation now
            old = list(self._free.queue)
            self._free.queue.clear()
        for inst in fresh:
            self._free.put(inst)
        for inst in old:
            self._retire(inst)
        self._stop_snapshots(keep=self.generation)
        log.info(
            "%s: generation %d, %d environment(s) (%s)",
            function.logical_id,
            self.generation,
            self.size,
            self.spec_summary(),
        )
        return self.generation

    def invoke(self, payload: bytes, deadline: float) -> InvokeResult:
        """Invoke on a free environment; raise :class:`GatewayTimeout` at ``deadline`` (the
        environment stays busy until the function returns, as on Lambda)."""
        if not self.size:  # nothing deployed yet: API Gateway answers 502
            return InvokeResult(self.function.logical_id, failure="no environment deployed")
        throttles = self.function.reserved_concurrency is not None
        if (inst := self.acquire(0.05 if throttles else deadline - time.monotonic())) is None:
            if throttles:
                raise FunctionThrottled(f"reserved concurrency {self.size} reached")
            raise GatewayTimeout("no free function instance")

        def work() -> InvokeResult:
            result = InvokeResult(inst.name, failure="invocation crashed")
            try:
                result = inst.invoke(payload, timeout=self.function.timeout + INVOKE_GRACE_S)
            finally:
                self.release(inst, result.failure is None)
            return result

        future = self._workers.submit(work)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            raise GatewayTimeout(f"{inst.name} still running") from None

    def close(self) -> None:
        """Stop every instance, idle or busy."""
        self._closed = True
        with self._lock:
            live = list(self._live)
        for thread in [self._retire(inst) for inst in live]:
            thread.join(10)
        with self._free.mutex:
            self._free.queue.clear()
        self._workers.shutdown(wait=False)
        self._stop_snapshots()
        shutil.rmtree(self._work, ignore_errors=True)
        if self.own_sandbox:
            self.sandbox.close()


def _environments(function: FunctionSpec, instances: int) -> int:
    """:attr:`FunctionPool.size` for these settings."""
    return (function.reserved_concurrency or instances) if instances else 0
