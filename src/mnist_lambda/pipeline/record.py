"""The run record: run ids, ``metrics.json``, ``run_state.json`` and ``run.json``.

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
from pathlib import Path
from typing import Any

from mnist_lambda.provenance import git_sha
from mnist_lambda.storage import atomic_write_json, jsonable, read_json


def update_metrics(run_dir: str | Path, **sections: Any) -> None:
    """Merge top-level keys into ``run_dir/metrics.json`` (written atomically).

    Returns None on purpose, so that a notebook cell ending with it displays nothing.
    """
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path)
    metrics.update(json.loads(json.dumps(sections, default=jsonable)))
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
    state[section] = json.loads(json.dumps(values, default=jsonable))
    atomic_write_json(path, state)


def new_run_id(root: str | Path) -> str:
    """UTC time + short git sha, e.g. ``20261127T171500Z-1a2b3c4``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{git_sha(root).replace('-dirty', 'd')}"
