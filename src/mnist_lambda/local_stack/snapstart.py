"""SnapStart, emulated: a version's snapshot environment, which restored environments fork from.

With ``SnapStart: ApplyOn: PublishedVersions``, Lambda initialises a published version once,
runs its before-snapshot hooks and snapshots the microVM; each new environment resumes from the
snapshot and runs the after-restore hooks instead of the init. Here each deployment (generation)
starts one :class:`SnapshotEnvironment`: awslambdaric initialises the function in its own
sandbox, as nobody, under ``MemorySize``, and the process then waits (``snapstart_runtime.py``).
A restored environment is an ``aws-lambda-rie`` whose runtime asks it for a fork. What differs
from Lambda (docs/local-stack.md): forks share the snapshot's ``/tmp``, and the memory they
report counts only the pages they touched since the restore.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.cgroups import EnvironmentLimits
from mnist_lambda.local_stack.environment import EnvironmentSpec

log = logging.getLogger("mnist_lambda.local_stack.lambda")

READY_LINE = "SNAPSTART snapshot ready"  # as snapstart_runtime.py prints it
NO_RUNTIME_API = "127.0.0.1:9"  # the snapshot is never invoked: nothing listens there


class SnapshotEnvironment:
    """One generation's snapshot: the function initialised once, serving restores."""

    def __init__(self, spec: EnvironmentSpec) -> None:
        self.spec = spec
        self.name = f"{spec.function.logical_id}-snapshot/g{spec.generation}"
        self.socket = f"mnist-lambda-snapstart-{uuid.uuid4().hex}"
        self.limits = spec.limits(f"snapshot-{self.socket[-12:]}")
        self.init_ms: float | None = None
        self._ready = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the function and take the snapshot; raise if the init fails."""
        env = {"SNAPSTART_SOCKET": self.socket, "AWS_LAMBDA_RUNTIME_API": NO_RUNTIME_API}
        started = time.monotonic()
        self.proc = proc = self.spec.spawn(self.limits, rie=None, runtime="snapshot", env=env)
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        while not self._ready.wait(0.02):
            if proc.poll() is not None or time.monotonic() - started > timeout:
                self.stop()
                raise RuntimeError(f"{self.name}: the init before the snapshot failed (log)")
        self.init_ms = (time.monotonic() - started) * 1000
        log.info("%s: snapshot taken, %.0f ms after the start", self.name, self.init_ms)

    def _pump(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace").rstrip()
            if line == READY_LINE:
                self._ready.set()
            else:
                log.info("[%s] %s", self.name, line)

    def restore_environment(self, limits: EnvironmentLimits | None) -> dict[str, str]:
        """Variables a restored environment's runtime needs to reach this snapshot."""
        joins = [str(d / "cgroup.procs") for d in (limits.dirs if limits else ())]
        return {"SNAPSTART_SOCKET": self.socket, "SNAPSTART_CGROUP_PROCS": ":".join(joins)}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the snapshot process (restored environments live on, each in its session)."""
        if self.proc is not None:
            procs.kill_tree(self.proc, timeout=3.0)
        if self.limits is not None:
            self.limits.remove()
