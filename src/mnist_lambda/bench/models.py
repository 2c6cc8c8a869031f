"""The benchmark's model comparison: every kind of model that can ship, through the local stack.

The tutorial's joblib'd scikit-learn k-NN, our numpy ``.npz`` PCA + k-NN and the ONNX models of
``Profile.onnx_models`` (exported by :func:`mnist_lambda.modeling.fit_export.fit_and_export`,
parity proven), each on a stack of its own with the same template and MemorySize: cold start (a
redeploy, then the first call; ``cold_repeats`` times), warm latency at ``model_rows`` rows,
accuracy of the endpoint's answers on the held-out rows and their agreement with the model
in-process, and the bytes it adds to the base image (its installed requirements, the function's
code and the model; the base image itself is the same for all).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.bench.objects import our_object
from mnist_lambda.bench.prepare import Prepared, rows_for
from mnist_lambda.bench.profile import Profile
from mnist_lambda.bench.stacks import Side, stacks
from mnist_lambda.local_stack import template_memory_mb
from mnist_lambda.local_stack.task_root import build
from mnist_lambda.modeling import candidates, fit_export, model_requirements
from mnist_lambda.modeling.options import ModelOptions
from mnist_lambda.paths import lambda_app_dir
from mnist_lambda.template import MEMORY_PARAMETER
from mnist_lambda.tutorial.deployment import NO_STAGE_THROTTLE, tutorial_start_args
from mnist_lambda.tutorial.model import tutorial_object
from mnist_serving.loading import ServingModel, load_model

TUTORIAL_MODEL = "tutorial: scikit-learn k-NN (joblib)"
OUR_MODEL = "ours: PCA + k-NN (numpy .npz)"
CODE_SKIPPED = ("model", "__pycache__", ".ipynb_checkpoints")
"""What is not the function's code in its app folder."""


@dataclass
class ModelEntry:
    """One model to measure: its stack and how it starts, the model in-process its answers are
    compared with (None: no agreement to report) and what it ships."""

    model: str
    format: str
    side: Side
    start: dict[str, Any]
    memory_mb: int
    expected: ServingModel | None
    shipped: dict[str, int]
    fit_seconds: float | None = None


def memory_mb(profile: Profile) -> int:
    """The MemorySize every model runs at: the profile's, else the template's default."""
    return profile.model_memory_mb or template_memory_mb()


def tree_bytes(path: Path, skip: Callable[[Path], bool] = lambda p: False) -> int:
    """Bytes of the files under ``path`` (one file: its size)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not skip(Path(folder) / d)]
        total += sum((Path(folder) / f).stat().st_size for f in files)
    return total


def shipped_bytes(
    app_dir: Path, model_files: list[Path], model_requirements: Path | None
) -> dict[str, int]:
    """What the image adds to the base image for this model: requirements, code, model."""
    deps = build(app_dir / "requirements.txt", model_requirements=model_requirements).deps_dir
    code = tree_bytes(app_dir, skip=lambda p: p.name in CODE_SKIPPED) - sum(
        f.stat().st_size for f in model_files if f.parent == app_dir
    )
    sizes = {
        "requirements": tree_bytes(deps) if deps else 0,
        "code": code,
        "model": sum(f.stat().st_size for f in model_files),
    }
    return sizes | {"total": sum(sizes.values())}


def compare_models(
    profile: Profile, prep: Prepared, work: Path, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per model (see the module docstring)."""
    memory = memory_mb(profile)
    entries = [tutorial_entry(prep, work, memory), our_entry(prep, work, memory)]
    for name in profile.onnx_models:
        say(f"models: fitting and exporting {name} (ONNX, parity on the held-out rows)")
        entries.append(onnx_entry(name, profile, prep, work, memory))
    rows = []
    for entry in entries:
        say(f"models: {entry.model} on the local stack")
        rows.append(measure_entry(entry, profile, prep))
    return rows


def _our_start(model_path: Path, memory: int) -> dict[str, Any]:
    """How our function starts serving ``model_path`` at ``memory`` MB."""
    memory_args = ["-P", f"{MEMORY_PARAMETER}={memory}"]
    return {"model_path": model_path, "extra_args": [*NO_STAGE_THROTTLE, *memory_args]}


def tutorial_entry(prep: Prepared, work: Path, memory: int) -> ModelEntry:
    """The tutorial's k-NN in its own task root (its labels are whatever its model says)."""
    app_dir = prep.tutorial_model.parent
    return ModelEntry(
        model=TUTORIAL_MODEL,
        format="joblib",
        side=Side("tutorial", work / "m-tutorial", tutorial_object, ".joblib"),
        start={"app_dir": app_dir, "extra_args": tutorial_start_args(memory)},
        memory_mb=memory,
        expected=None,
        shipped=shipped_bytes(app_dir, [prep.tutorial_model], None),
    )


def our_entry(prep: Prepared, work: Path, memory: int) -> ModelEntry:
    """Our ``.npz`` model in ``lambda_app/``."""
    return ModelEntry(
        model=OUR_MODEL,
        format="npz",
        side=Side("npz", work / "m-npz", our_object, ".npz"),
        start=_our_start(prep.our_model, memory),
        memory_mb=memory,
        expected=load_model(prep.our_model),
        shipped=shipped_bytes(lambda_app_dir(), [prep.our_model], None),
    )


def onnx_entry(name: str, profile: Profile, prep: Prepared, work: Path, memory: int) -> ModelEntry:
    """Candidate ``name`` fitted on the split and exported to ONNX (parity proven), in
    ``lambda_app/`` with its runtime's requirements."""
    options = ModelOptions(n_neighbors=profile.n_neighbors, pca_components=profile.n_components)
    candidate = candidates.get_candidate(name, options)
    exported = fit_export.fit_and_export(
        candidate,
        prep.split(),
        work / f"model-{candidate.slug}",
        cv_scores=[],
        run_id="bench",
        data_source=prep.source,
    )
    requirements = exported.artifact.with_name(model_requirements.FILE_NAME)
    return ModelEntry(
        model=f"{name} (ONNX)",
        format="onnx",
        side=Side(name, work / f"m-{candidate.slug}", our_object, ".npz"),
        start=_our_start(exported.artifact, memory),
        memory_mb=memory,
        expected=exported.model,
        shipped=shipped_bytes(lambda_app_dir(), exported.files, requirements),
        fit_seconds=exported.report.fit_seconds,
    )


def measure_entry(entry: ModelEntry, profile: Profile, prep: Prepared) -> dict[str, Any]:
    """Cold starts, warm calls and the held-out rows' answers of one model on its own stack."""
    side = entry.side
    with stacks([side], {side.name: entry.start}):
        side.upload("rows", rows_for(prep.x_test, profile.model_rows))
        side.upload("heldout", prep.x_test)
        cold = []
        for _ in range(profile.cold_repeats):
            side.redeploy()
            cold.append(side.call("rows"))
        warm = [side.call("rows") for _ in range(profile.repeats)]
        answered = side.call("heldout")["labels"]
    expected = entry.expected
    agreement = (
        float(np.mean(answered == expected.predict(prep.x_test))) if expected is not None else None
    )
    seconds = [w["seconds"] for w in warm]
    function_ms = [w["function_ms"] for w in warm if w["function_ms"] is not None]
    return {
        "model": entry.model,
        "format": entry.format,
        "memory_mb": entry.memory_mb,
        "rows": profile.model_rows,
        "cold_first_response_ms_p50": float(np.median([c["seconds"] for c in cold])) * 1000,
        "cold_init_ms_p50": float(np.median([c["init_ms"] or 0 for c in cold])),
        "all_cold": all(c["cold"] for c in cold),
        "warm_ms_p50": float(np.percentile(seconds, 50)) * 1000,
        "warm_ms_p95": float(np.percentile(seconds, 95)) * 1000,
        "warm_function_ms_p50": float(np.median(function_ms or [0])),
        "accuracy": float(np.mean(answered == prep.y_test)),
        "agreement_with_the_model": agreement,
        "shipped_bytes": entry.shipped,
        "fit_seconds": entry.fit_seconds,
    }
