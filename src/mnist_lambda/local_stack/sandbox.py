"""An execution environment's sandbox: the image's file layout, an unprivileged user, limits.

As root, each environment is started with ``unshare --mount`` on the Lambda base image's layout
(read-only ``/var/task``, private ``/tmp``, ...; see docs/local-stack.md), as ``nobody``, in
its :mod:`.cgroups` (``MemorySize`` and Lambda's CPU share). Not root: an environment runs as
the current user on the staged files in place, without limits, and the ready line says so.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnist_lambda.local_stack.cgroups import Cgroups, EnvironmentLimits, LimitsUnavailable
from mnist_lambda.local_stack.task_root import Build
from mnist_lambda.template.reader import FunctionSpec

SANDBOX_USER = (65534, 65534)  # nobody:nogroup, on every Linux
TASK_ROOT, RUNTIME_DIR, LANG_DIR = "/var/task", "/var/runtime", "/var/lang"
RIE_PATH = "/var/rapid/aws-lambda-rie"
SNAPSTART_PATH = "/var/rapid/snapstart.py"  # the emulator's SnapStart, beside the RIE
SNAPSTART_RUNTIME = Path(__file__).with_name("snapstart_runtime.py")
IMAGE_ENV = {  # Lambda's own path variables, in the image layout
    "LAMBDA_TASK_ROOT": TASK_ROOT,
    "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
    "PYTHONPATH": RUNTIME_DIR,
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:"
    "/var/task/lib:/opt/lib",
}


@dataclass
class Sandbox:
    """How this stack isolates its environments; :meth:`describe` goes into the ready line."""

    build: Build
    isolated: bool = field(default_factory=lambda: os.geteuid() == 0)
    cgroups: Cgroups | None = None
    limits_note: str = ""

    def __post_init__(self) -> None:
        try:
            self.cgroups = Cgroups()
            self.limits_note = f"enforced (cgroup v{2 if self.cgroups.v2 else 1})"
        except (LimitsUnavailable, OSError) as exc:
            self.limits_note = f"limits not enforced: {exc}"

    def describe(self) -> dict[str, object]:
        """The ready line's ``sandbox`` entry."""
        python = self.build.python
        note = "" if self.build.matches_image else f" (the image has {self.build.image_python})"
        return {
            "python": f"{python.version}{note}",
            "user": "nobody" if self.isolated else f"uid {os.geteuid()} (not root: not dropped)",
            "filesystem": "image layout, read-only task root, private /tmp"
            if self.isolated
            else "sandbox not enforced: not root, so no private mounts",
            "limits": self.limits_note,
        }

    def limits(
        self, name: str, memory_mb: int, joinable: bool = False
    ) -> EnvironmentLimits | None:
        """Environment ``name``'s cgroups (None without them); ``joinable``: the sandbox user
        may move its own processes in (a SnapStart restore)."""
        if self.cgroups is None:
            return None
        joiner = SANDBOX_USER if joinable and self.isolated else None
        return self.cgroups.create(name, memory_mb, joiner)

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()

    def command(
        self,
        function: FunctionSpec,
        app: Path,
        limits: EnvironmentLimits | None,
        *,
        rie: tuple[Path, Sequence[str]] | None,
        runtime: str = "awslambdaric",
        deps: Path | None = None,
    ) -> tuple[list[str], dict[str, str], Path]:
        """(argv, Lambda's path variables, cwd) to start one environment on staged ``app``:
        ``rie`` (binary, arguments) running ``runtime`` (``awslambdaric``; with SnapStart,
        ``restore``), or the ``snapshot`` environment alone (no RIE). ``deps``: the
        deployment's installed requirements (default: the stack's)."""
        deps = deps or self.build.deps_dir
        procs_files = [d / "cgroup.procs" for d in (limits.dirs if limits else ())]
        join = [f"echo $$ > {shlex.quote(str(f))}" for f in procs_files]
        program = self._program(function.handler, rie, runtime)
        if not self.isolated:
            path = [str(d) for d in (deps, self.build.runtime_dir) if d is not None]
            env = {"LAMBDA_TASK_ROOT": str(app), "PYTHONPATH": ":".join(path)}
            env["LAMBDA_RUNTIME_DIR"] = str(self.build.runtime_dir)
            script = [*join, 'exec "$@"']
            return ["sh", "-c", "; ".join(script), "sh", *program], env, app
        script = ["set -e", *join, *self._image_layout(function, app, deps, rie)]
        uid, gid = SANDBOX_USER
        script += [
            f"cd {TASK_ROOT}",
            f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
            '--pdeathsig TERM -- "$@"',
        ]
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]
        return [*argv, "sh", *program], dict(IMAGE_ENV), Path("/")

    def _program(
        self, handler: str, rie: tuple[Path, Sequence[str]] | None, runtime: str
    ) -> list[str]:
        """The emulator (if any) and the runtime it starts, at their paths in the sandbox."""
        python = self.build.python
        if self.isolated:
            exe = os.path.join(LANG_DIR, os.path.relpath(python.executable, python.prefix))
            rie_cmd, snapstart, site = [RIE_PATH, *rie[1]] if rie else [], SNAPSTART_PATH, []
        else:  # -S: none of the dev interpreter's site-packages
            exe, snapstart, site = python.executable, str(SNAPSTART_RUNTIME), ["-S"]
            rie_cmd = [str(rie[0]), *rie[1]] if rie else []
        runtimes = {
            "awslambdaric": [exe, *site, "-m", "awslambdaric", handler],
            "snapshot": [exe, *site, snapstart, "snapshot", handler],
            "restore": [exe, "-I", "-S", snapstart, "restore"],
        }
        return rie_cmd + runtimes[runtime]

    def _image_layout(
        self,
        function: FunctionSpec,
        app: Path,
        deps: Path | None,
        rie: tuple[Path, Sequence[str]] | None,
    ) -> list[str]:
        """The shell lines that mount the base image's layout (docs/local-stack.md)."""
        lowerdir = shlex.quote(f"{app}:{deps}")
        task = (
            [f"mount -t overlay overlay -o ro,lowerdir={lowerdir} {TASK_ROOT}"]
            if deps is not None
            else _bind(app, TASK_ROOT)
        )
        python = self.build.python
        # the interpreter's own site-packages is not part of what ships
        site_packages = f"{LANG_DIR}/lib/python{python.version}/site-packages"
        tmp_mb = function.ephemeral_storage_mb
        return [
            "mount -t tmpfs -o size=1m,mode=755 lambda-var /var",
            f"mkdir -p {TASK_ROOT} {RUNTIME_DIR} {LANG_DIR} {os.path.dirname(RIE_PATH)}",
            f"touch {RIE_PATH} {SNAPSTART_PATH}",
            *task,
            *_bind(self.build.runtime_dir, RUNTIME_DIR),
            *_bind(python.prefix, LANG_DIR),
            f"mount -t tmpfs -o ro,size=4k lambda-site {site_packages}",
            *(_bind(rie[0], RIE_PATH) if rie else ()),
            *_bind(SNAPSTART_RUNTIME, SNAPSTART_PATH),
            "mount -o remount,ro /var",
            f"mount -t tmpfs -o size={tmp_mb}m,mode=1777 lambda-tmp /tmp",
            "mount -t tmpfs -o ro,size=4k lambda-shm /dev/shm",
        ]


def _bind(src: Path | str, dst: str) -> list[str]:
    """A read-only bind mount of ``src`` on ``dst``."""
    q = shlex.quote
    return [f"mount --bind {q(str(src))} {dst}", f"mount -o remount,bind,ro {dst}"]
