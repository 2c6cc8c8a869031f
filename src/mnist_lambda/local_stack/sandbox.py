"""An execution environment's sandbox: the image's file layout, an unprivileged user, limits.

As root, each environment is started with ``unshare --mount`` on the Lambda base image's layout
(read-only ``/var/task``, private ``/tmp``, ...; see docs/local-stack.md), as ``nobody``, in
cgroups with a hard memory limit of ``MemorySize`` (no swap: going over kills the runtime, as
Lambda kills a sandbox) and a CPU quota of ``MemorySize / 1769`` of one CPU, capped at the
machine's cores. cgroup v1 and v2 are both handled (the maintained Python cgroup packages cover
one or the other). Not root: an environment runs as the current user on the staged files in
place, without limits, and the ready line says so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mnist_lambda.aws_limits import MIB, vcpu_share
from mnist_lambda.local_stack.task_root import Build
from mnist_lambda.template.reader import FunctionSpec

CFS_PERIOD_US = 100_000
SANDBOX_USER = (65534, 65534)  # nobody:nogroup, on every Linux
TASK_ROOT, RUNTIME_DIR, LANG_DIR = "/var/task", "/var/runtime", "/var/lang"
RIE_PATH = "/var/rapid/aws-lambda-rie"
SNAPSTART_PATH = "/var/rapid/snapstart.py"  # the emulator's SnapStart, beside the RIE
SNAPSTART_RUNTIME = Path(__file__).with_name("snapstart_runtime.py")
# Lambda's own values for these, in the image layout
LAMBDA_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LAMBDA_LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:"
    "/opt/lib"
)
_STACKS = itertools.count(1)


class LimitsUnavailable(RuntimeError):
    """Memory and CPU limits cannot be enforced here; the message says why."""


def _write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


def _own_path(controller: str) -> str:
    """This process's cgroup path in the hierarchy of ``controller`` ('' for v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise LimitsUnavailable(f"this process is in no {controller or 'unified'} cgroup")


def _mounts() -> dict[str, Path]:
    """'memory', 'cpu' (v1) or 'unified' (v2, with both controllers) -> mount point."""
    found: dict[str, Path] = {}
    for part in psutil.disk_partitions(all=True):
        if part.fstype == "cgroup":
            for controller in ("memory", "cpu"):
                if controller in part.opts.split(","):
                    found[controller] = Path(part.mountpoint)
        elif part.fstype == "cgroup2":
            controllers = (Path(part.mountpoint) / "cgroup.controllers").read_text().split()
            if {"memory", "cpu"} <= set(controllers):
                found["unified"] = Path(part.mountpoint)
    return found


@dataclass
class EnvironmentLimits:
    """The cgroup(s) of one environment; its launcher writes its pid to their ``cgroup.procs``."""

    dirs: tuple[Path, ...]
    v2: bool

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory limit."""
        events = self.dirs[0] / ("memory.events" if self.v2 else "memory.oom_control")
        with contextlib.suppress(OSError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def max_memory_mb(self) -> float | None:
        """Peak memory so far, as Lambda's ``Max Memory Used`` counts it (page cache too)."""
        peak = self.dirs[0] / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")
        with contextlib.suppress(OSError, ValueError):
            return int(peak.read_text()) / MIB
        return None

    def remove(self) -> None:
        """Remove the cgroup(s); their processes must be gone."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


class Cgroups:
    """Where this stack makes its environments' cgroups (one folder per stack)."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise LimitsUnavailable("not root, so no cgroup can be written")
        mounts = _mounts()
        name = f"mnist-lambda-{os.getpid()}-{next(_STACKS)}"
        if "memory" in mounts and "cpu" in mounts:  # v1: nest under our own cgroups
            self.v2 = False
            self.parents = tuple(
                mounts[c] / _own_path(c).lstrip("/") / name for c in ("memory", "cpu")
            )
        elif "unified" in mounts:  # v2: beside our cgroup (no processes in inner nodes)
            self.v2 = True
            self.parents = (mounts["unified"] / name,)
        else:
            raise LimitsUnavailable("no cgroup hierarchy with the memory and cpu controllers")
        try:
            for parent in self.parents:
                parent.mkdir(exist_ok=True)
            if self.v2:
                _write(self.parents[0].parent / "cgroup.subtree_control", "+memory +cpu")
                _write(self.parents[0] / "cgroup.subtree_control", "+memory +cpu")
        except OSError as exc:
            self.close()
            raise LimitsUnavailable(f"cannot create cgroups: {exc}") from exc

    def create(self, name: str, memory_mb: int, joinable: bool = False) -> EnvironmentLimits:
        """A cgroup for environment ``name``: ``memory_mb`` hard, Lambda's CPU share;
        ``joinable``: the sandbox user may move its own processes in (a SnapStart restore)."""
        cpus = vcpu_share(memory_mb, psutil.cpu_count() or 1)
        quota = max(1000, int(cpus * CFS_PERIOD_US))
        dirs = tuple(parent / name for parent in self.parents)
        for d in dirs:
            d.mkdir(exist_ok=True)
        limit = memory_mb * MIB
        if self.v2:
            _write(dirs[0] / "memory.max", limit)
            with contextlib.suppress(OSError):
                _write(dirs[0] / "memory.swap.max", 0)
            _write(dirs[0] / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        else:
            memory, cpu = dirs
            _write(memory / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                _write(memory / "memory.memsw.limit_in_bytes", limit)
            _write(cpu / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", quota)
        if joinable:  # v2 checks the common ancestor's cgroup.procs too
            for procs in [d / "cgroup.procs" for d in dirs + self.parents[: self.v2]]:
                os.chown(procs, *SANDBOX_USER)
        return EnvironmentLimits(dirs, self.v2)

    def close(self) -> None:
        """Remove this stack's cgroup folders (their environments must be stopped)."""
        children = [c for p in self.parents if p.is_dir() for c in p.iterdir() if c.is_dir()]
        for d in [*children, *self.parents]:
            with contextlib.suppress(OSError):
                d.rmdir()


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
        if self.cgroups is None:
            return None
        return self.cgroups.create(name, memory_mb, joinable and self.isolated)

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
        python, handler = self.build.python, function.handler
        deps = deps or self.build.deps_dir
        procs_files = [d / "cgroup.procs" for d in (limits.dirs if limits else ())]
        join = [f"echo $$ > {shlex.quote(str(f))}" for f in procs_files]
        if self.isolated:
            exe = os.path.join(LANG_DIR, os.path.relpath(python.executable, python.prefix))
            rie_cmd, snapstart, site = [RIE_PATH, *rie[1]] if rie else [], SNAPSTART_PATH, []
        else:  # -S: none of the dev interpreter's site-packages
            exe, snapstart, site = python.executable, str(SNAPSTART_RUNTIME), ["-S"]
            rie_cmd = [str(rie[0]), *rie[1]] if rie else []
        program = (
            rie_cmd
            + {
                "awslambdaric": [exe, *site, "-m", "awslambdaric", handler],
                "snapshot": [exe, *site, snapstart, "snapshot", handler],
                "restore": [exe, "-I", "-S", snapstart, "restore"],
            }[runtime]
        )
        if not self.isolated:
            path = [str(d) for d in (deps, self.build.runtime_dir) if d is not None]
            env = {"LAMBDA_TASK_ROOT": str(app), "PYTHONPATH": ":".join(path)}
            env["LAMBDA_RUNTIME_DIR"] = str(self.build.runtime_dir)
            script = [*join, 'exec "$@"']
            return ["sh", "-c", "; ".join(script), "sh", *program], env, app

        def bind(src: Path | str, dst: str) -> list[str]:
            q = shlex.quote
            return [f"mount --bind {q(str(src))} {dst}", f"mount -o remount,bind,ro {dst}"]

        task = (
            [f"mount -t overlay overlay -o ro,lowerdir={shlex.quote(f'{app}:{deps}')} {TASK_ROOT}"]
            if deps is not None
            else bind(app, TASK_ROOT)
        )
        uid, gid = SANDBOX_USER
        # the interpreter's own site-packages is not part of what ships
        site_packages = f"{LANG_DIR}/lib/python{python.version}/site-packages"
        script = [
            "set -e",
            *join,
            "mount -t tmpfs -o size=1m,mode=755 lambda-var /var",
            f"mkdir -p {TASK_ROOT} {RUNTIME_DIR} {LANG_DIR} {os.path.dirname(RIE_PATH)}",
            f"touch {RIE_PATH} {SNAPSTART_PATH}",
            *task,
            *bind(self.build.runtime_dir, RUNTIME_DIR),
            *bind(python.prefix, LANG_DIR),
            f"mount -t tmpfs -o ro,size=4k lambda-site {site_packages}",
            *(bind(rie[0], RIE_PATH) if rie else ()),
            *bind(SNAPSTART_RUNTIME, SNAPSTART_PATH),
            "mount -o remount,ro /var",
            f"mount -t tmpfs -o size={function.ephemeral_storage_mb}m,mode=1777 lambda-tmp /tmp",
            "mount -t tmpfs -o ro,size=4k lambda-shm /dev/shm",
            f"cd {TASK_ROOT}",
            f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
            '--pdeathsig TERM -- "$@"',
        ]
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]
        argv += ["sh", *program]
        env = {
            "LAMBDA_TASK_ROOT": TASK_ROOT,
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            "PYTHONPATH": RUNTIME_DIR,
            "PATH": LAMBDA_PATH,
            "LD_LIBRARY_PATH": LAMBDA_LD_LIBRARY_PATH,
        }
        return argv, env, Path("/")
