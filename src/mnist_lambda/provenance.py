"""Where a result comes from: the checkout's commit and the versions of the libraries that made
it (a run's ``run.json``, a model's manifest)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

TRACKED_LIBRARIES = (
    "numpy",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "papermill",
    "boto3",
    "moto",
    "awslambdaric",
    "aws-sam-cli",
    "mnist-lambda",
)


def git_sha(root: str | Path, short: bool = True) -> str:
    """The checkout's commit (``-dirty`` when it has changes), or ``nogit``."""
    try:
        args = ["git", "-C", str(root), "rev-parse"] + (["--short"] if short else []) + ["HEAD"]
        sha = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"
    return sha + ("-dirty" if dirty else "")


def library_versions(names: Sequence[str] = TRACKED_LIBRARIES) -> dict[str, str]:
    """``{name: installed version or "not installed"}`` for ``names``."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
