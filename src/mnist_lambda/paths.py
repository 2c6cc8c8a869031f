"""Where things live: the project root, its notebooks, the Lambda app and the run outputs."""

from __future__ import annotations

import os
from pathlib import Path

OUTPUTS_ENV = "MNIST_LAMBDA_OUTPUTS"
"""Where run folders go instead of ``outputs/`` (the tests' interactive runs use it)."""

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout that holds pyproject.toml (the package is installed editable from it)."""
    for parent in PACKAGE_DIR.parents:
        if (parent / "pyproject.toml").exists() and (parent / "notebooks").is_dir():
            return parent
    raise RuntimeError(f"cannot find the project root above {PACKAGE_DIR}")


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def lambda_app_dir() -> Path:
    return project_root() / "lambda_app"


def outputs_dir() -> Path:
    """``outputs/`` of the project, or the folder ``$MNIST_LAMBDA_OUTPUTS`` names."""
    override = os.environ.get(OUTPUTS_ENV)
    return Path(override) if override else project_root() / "outputs"


def resolve_run_dir(run_dir: str | Path | None) -> Path:
    """The run folder a notebook writes into: the given one, or ``outputs/interactive``."""
    path = Path(run_dir) if run_dir else outputs_dir() / "interactive"
    if not path.is_absolute():
        path = project_root() / path
    path.mkdir(parents=True, exist_ok=True)
    return path
