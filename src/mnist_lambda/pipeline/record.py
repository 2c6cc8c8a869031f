"""The run record: atomic writes, run ids, ``metrics.json``, ``run_state.json`` and ``run.json``.

- ``metrics.json``: what the run measured (accuracies, latencies...), for people and reports.
- ``run_state.json``: what one step hands to the next (:func:`update_state`, :func:`read_state`),
  one section per step: ``sample`` (data used), ``train`` (serving model), ``upload`` (target,
  region, bucket, key), ``deploy`` (target, endpoint URL, memory). A notebook run alone reads
  what an earlier step left in the same run folder, or falls back to its defaults.
- ``run.json``: how the run was made (parameters, versions, status, timings).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal modes
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return Path(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def update_metrics(run_dir: str | Path, **sections: Any) -> None:
    """Merge top-level keys into ``run_dir/metrics.json`` (written atomically).

    Returns None on purpose, so that a notebook cell ending with it displays nothing.
    """
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path)
    metrics.update(json.loads(json.dumps(sections, default=_jsonable)))
    atomic_write_json(path, metrics)


STATE_FILE = "run_state.json"


def read_state(run_dir: str | Path, section: str | None = None) -> dict[str, Any]:
    """``run_dir/run_state.json``, or one of its sections; empty when absent."""
    state = read_json(Path(run_dir) / STATE_FILE)
    return dict(state.get(section) or {}) if section else state


def update_state(run_dir: str | Path, section: str, **values: Any) -> None:
    """Replace one step's section of ``run_dir/run_state.json`` (written atomically)."""
    path = Path(run_dir) / STATE_FILE
    state = read_json(path)
    state[section] = json.loads(json.dumps(values, default=_jsonable))
    atomic_write_json(path, state)


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


def new_run_id(root: str | Path) -> str:
    """UTC time + short git sha, e.g. ``20261127T171500Z-1a2b3c4``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{git_sha(root).replace('-dirty', 'd')}"


def library_versions(names: Sequence[str] = TRACKED_LIBRARIES) -> dict[str, str]:
    """``{name: installed version or "not installed"}`` for ``names``."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
