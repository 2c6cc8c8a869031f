"""What an execution environment is made of: :class:`EnvironmentSpec`, one value per deployment
(generation) of a function, handed to each environment it starts, and the function's variables.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.cgroups import EnvironmentLimits
from mnist_lambda.local_stack.sandbox import Sandbox
from mnist_lambda.template.reader import FunctionSpec

# What a function inherits from the supervisor's environment; everything else is Lambda's own.
_PASSTHROUGH_ENV = re.compile(r"PATH|(OMP|OPENBLAS|MKL)_NUM_THREADS|OPENBLAS_(CORETYPE|L2_SIZE)")


def function_environment(
    spec: FunctionSpec, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The function's environment: Lambda's reserved variables, the template's, then overrides.
    Nothing else leaks in (``~/.aws`` neither); the sandbox adds the path variables."""
    return {
        **{k: v for k, v in os.environ.items() if _PASSTHROUGH_ENV.fullmatch(k)},
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        **spec.environment,
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "_HANDLER": spec.handler,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if spec.snap_start else "on-demand",
        **(overrides or {}),
    }


@dataclass(frozen=True)
class EnvironmentSpec:
    """One deployment of a function: its settings, staged app, installed requirements and
    variables, and the sandbox its environments run in."""

    function: FunctionSpec
    generation: int
    app: Path  # the staged lambda_app/ (the task root's code)
    deps: Path | None  # its installed requirements (None: the sandbox's)
    sandbox: Sandbox
    env: Mapping[str, str] = field(default_factory=dict)  # function_environment(...)

    def limits(self, name: str, joinable: bool = False) -> EnvironmentLimits | None:
        """Cgroups for environment ``name`` at the function's ``MemorySize``."""
        return self.sandbox.limits(name, self.function.memory_size, joinable)

    def spawn(
        self,
        limits: EnvironmentLimits | None,
        *,
        rie: tuple[Path, Sequence[str]] | None,
        runtime: str,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one environment in the sandbox (:meth:`.Sandbox.command`), with the function's
        variables plus ``env``."""
        argv, paths, cwd = self.sandbox.command(
            self.function, self.app, limits, rie=rie, runtime=runtime, deps=self.deps
        )
        return procs.spawn(argv, env={**self.env, **paths, **(env or {})}, cwd=cwd)
