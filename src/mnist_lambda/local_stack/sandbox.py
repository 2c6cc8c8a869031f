"""An execution environment's sandbox: the image's file layout, an unprivileged user, limits.

When the stack runs as root, each environment (one ``aws-lambda-rie`` and the runtime it
starts) is launched with ``unshare --mount`` and sees the layout of the Lambda base image, built
from mounts private to it:

=================  ==========================================================  ============
``/var/task``      the staged ``lambda_app/`` over the pip-installed requirements  read-only
``/var/runtime``   ``awslambdaric`` (the runtime interface client)                 read-only
``/var/lang``      the Python installation, its site-packages emptied               read-only
``/tmp``           a fresh tmpfs of the template's ``EphemeralStorage``            writable
``/dev/shm``       empty (Lambda has no shared memory)                             read-only
=================  ==========================================================  ============

then drops to ``nobody`` (Lambda never runs code as root) with no supplementary groups and no
new privileges, inside cgroups holding ``MemorySize`` and the CPU share (:mod:`.cgroups`).
Not root: the environment runs as the current user on the staged files in place, and the
ready line says what is not enforced.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnist_lambda.local_stack.cgroups import Cgroups, EnvironmentLimits, detect
from mnist_lambda.local_stack.task_root import Build

SANDBOX_USER = (65534, 65534)  # nobody:nogroup, on every Linux
TASK_ROOT, RUNTIME_DIR, LANG_DIR = "/var/task", "/var/runtime", "/var/lang"
RIE_PATH = "/var/rapid/aws-lambda-rie"
# Lambda's own values for these, in the image layout
LAMBDA_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LAMBDA_LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:"
    "/opt/lib"
)


@dataclass
class Sandbox:
    """How this stack isolates its environments; :meth:`describe` goes into the ready line."""

    build: Build
    isolated: bool = field(default_factory=lambda: os.geteuid() == 0)
    cgroups: Cgroups | None = None
    limits_note: str = ""

    def __post_init__(self) -> None:
        found = detect()
        if isinstance(found, Cgroups):
            self.cgroups = found
            self.limits_note = f"enforced (cgroup v{2 if found.v2 else 1})"
        else:
            self.limits_note = f"limits not enforced: {found}"

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

    def limits(self, name: str, memory_mb: int) -> EnvironmentLimits | None:
        return self.cgroups.create(name, memory_mb) if self.cgroups is not None else None

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()

    def command(
        self,
        rie: Path,
        rie_args: Sequence[str],
        handler: str,
        app: Path,
        tmp_mb: int,
        limits: EnvironmentLimits | None,
    ) -> tuple[list[str], dict[str, str], Path]:
        """(argv, Lambda's path variables, cwd) to start one environment on staged ``app``."""
        python = self.build.python
        deps = self.build.deps_dir
        join = [f"echo $$ > {shlex.quote(str(f))}" for f in (limits.procs_files if limits else ())]
        if not self.isolated:
            runtime_cmd = [python.executable, "-S", "-m", "awslambdaric", handler]
            path = [str(d) for d in (deps, self.build.runtime_dir) if d is not None]
            env = {"LAMBDA_TASK_ROOT": str(app), "PYTHONPATH": ":".join(path)}
            env["LAMBDA_RUNTIME_DIR"] = str(self.build.runtime_dir)
            script = [*join, 'exec "$@"']
            argv = ["sh", "-c", "; ".join(script), "sh", str(rie), *rie_args, *runtime_cmd]
            return argv, env, app

        def bind(src: Path | str, dst: str) -> list[str]:
            q = shlex.quote
            return [f"mount --bind {q(str(src))} {dst}", f"mount -o remount,bind,ro {dst}"]

        task = (
            [f"mount -t overlay overlay -o ro,lowerdir={shlex.quote(f'{app}:{deps}')} {TASK_ROOT}"]
            if deps is not None
            else bind(app, TASK_ROOT)
        )
        uid, gid = SANDBOX_USER
        script = [
            "set -e",
            *join,
            "mount -t tmpfs -o size=1m,mode=755 lambda-var /var",
            f"mkdir -p {TASK_ROOT} {RUNTIME_DIR} {LANG_DIR} {os.path.dirname(RIE_PATH)}",
            f"touch {RIE_PATH}",
            *task,
            *bind(self.build.runtime_dir, RUNTIME_DIR),
            *bind(python.prefix, LANG_DIR),
            # the interpreter's own site-packages is not part of what ships
            f"mount -t tmpfs -o ro,size=4k lambda-site {LANG_DIR}/{python.site_packages}",
            *bind(rie, RIE_PATH),
            "mount -o remount,ro /var",
            f"mount -t tmpfs -o size={tmp_mb}m,mode=1777 lambda-tmp /tmp",
            "mount -t tmpfs -o ro,size=4k lambda-shm /dev/shm",
            f"cd {TASK_ROOT}",
            f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
            '--pdeathsig TERM -- "$@"',
        ]
        runtime_cmd = [f"{LANG_DIR}/{python.relative_executable}", "-m", "awslambdaric", handler]
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]
        argv += ["sh", RIE_PATH, *rie_args, *runtime_cmd]
        env = {
            "LAMBDA_TASK_ROOT": TASK_ROOT,
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            "PYTHONPATH": RUNTIME_DIR,
            "PATH": LAMBDA_PATH,
            "LD_LIBRARY_PATH": LAMBDA_LD_LIBRARY_PATH,
        }
        return argv, env, Path("/")
