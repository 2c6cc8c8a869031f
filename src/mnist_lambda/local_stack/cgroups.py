"""Memory and CPU limits for execution environments, from the kernel's cgroups.

Each environment gets its own cgroup with a hard memory limit of ``MemorySize`` (no swap: going
over kills the runtime, as Lambda kills a sandbox) and a CPU quota of ``MemorySize / 1769`` of
one CPU, capped at the machine's cores. cgroup v1 and v2 are both handled (the maintained Python
cgroup packages cover one or the other). Only root can write them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from mnist_lambda.aws_limits import MIB, vcpu_share

CFS_PERIOD_US = 100_000
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

    def create(
        self, name: str, memory_mb: int, joiner: tuple[int, int] | None = None
    ) -> EnvironmentLimits:
        """A cgroup for environment ``name``: ``memory_mb`` hard, Lambda's CPU share;
        ``joiner`` (uid, gid) may move its own processes in (a SnapStart restore)."""
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
        if joiner is not None:  # v2 checks the common ancestor's cgroup.procs too
            for procs in [d / "cgroup.procs" for d in dirs + self.parents[: self.v2]]:
                os.chown(procs, *joiner)
        return EnvironmentLimits(dirs, self.v2)

    def close(self) -> None:
        """Remove this stack's cgroup folders (their environments must be stopped)."""
        children = [c for p in self.parents if p.is_dir() for c in p.iterdir() if c.is_dir()]
        for d in [*children, *self.parents]:
            with contextlib.suppress(OSError):
                d.rmdir()
