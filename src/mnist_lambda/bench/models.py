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
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.bench.profile import Profile
from mnist_lambda.paths import lambda_app_dir


def memory_mb(profile: Profile) -> int:
    """The MemorySize every model runs at: the profile's, else the template's default."""
    from mnist_lambda.local_stack import template_memory_mb

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
    from mnist_lambda.local_stack.task_root import build

    deps = build(app_dir / "requirements.txt", model_requirements=model_requirements).deps_dir
    code = tree_bytes(
        app_dir, skip=lambda p: p.name in ("model", "__pycache__", ".ipynb_checkpoints")
    ) - sum(f.stat().st_size for f in model_files if f.parent == app_dir)
    sizes = {
        "requirements": tree_bytes(deps) if deps else 0,
        "code": code,
        "model": sum(f.stat().st_size for f in model_files),
    }
    return sizes | {"total": sum(sizes.values())}


def compare_models(
    profile: Profile, prep: Any, work: Path, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per model (see the module docstring)."""
    from mnist_lambda.bench import run as bench
    from mnist_lambda.modeling import candidates, fit_export, model_requirements
    from mnist_lambda.modeling.options import ModelOptions
    from mnist_lambda.modeling.sampling import Split
    from mnist_serving.loading import load_model

    split = Split(prep.x_train, prep.y_train, prep.x_test, prep.y_test)
    tutorial_dir = prep.tutorial_model.parent
    entries: list[dict[str, Any]] = [
        {
            "model": "tutorial: scikit-learn k-NN (joblib)",
            "format": "joblib",
            "config": bench.Config(
                "tutorial", work / "m-tutorial", bench.tutorial_object, ".joblib"
            ),
            "start": {
                "app_dir": tutorial_dir,
                "extra_args": bench.tutorial_start_args(memory_mb(profile)),
            },
            "expected": None,  # the tutorial's labels are whatever its model says
            "shipped": shipped_bytes(tutorial_dir, [prep.tutorial_model], None),
        }
    ]
    our_files = [prep.our_model]
    entries.append(
        {
            "model": "ours: PCA + k-NN (numpy .npz)",
            "format": "npz",
            "config": bench.Config("npz", work / "m-npz", bench.our_object, ".npz"),
            "start": {"model_path": prep.our_model},
            "expected": load_model(prep.our_model),
            "shipped": shipped_bytes(lambda_app_dir(), our_files, None),
        }
    )
    for name in profile.onnx_models:
        say(f"models: fitting and exporting {name} (ONNX, parity on the held-out rows)")
        options = ModelOptions(
            n_neighbors=profile.n_neighbors, pca_components=profile.n_components
        )
        candidate = candidates.get_candidate(name, options)
        exported = fit_export.fit_and_export(
            candidate,
            split,
            work / f"model-{candidate.slug}",
            cv_scores=[],
            run_id="bench",
            data_source=prep.source,
        )
        requirements = exported.artifact.with_name(model_requirements.FILE_NAME)
        entries.append(
            {
                "model": f"{name} (ONNX)",
                "format": "onnx",
                "config": bench.Config(
                    name, work / f"m-{candidate.slug}", bench.our_object, ".npz"
                ),
                "start": {"model_path": exported.artifact},
                "expected": exported.model,
                "shipped": shipped_bytes(lambda_app_dir(), exported.files, requirements),
                "fit_seconds": exported.report.fit_seconds,
            }
        )
    rows = []
    for entry in entries:
        say(f"models: {entry['model']} on the local stack")
        rows.append(_measure(entry, profile, prep))
    return rows


def _measure(entry: dict[str, Any], profile: Profile, prep: Any) -> dict[str, Any]:
    from mnist_lambda import local_stack
    from mnist_lambda.bench import run as bench

    cfg = entry["config"]
    start = dict(entry["start"])
    start.setdefault("extra_args", [*bench.NO_STAGE_THROTTLE])
    memory = ["-P", f"MemorySize={memory_mb(profile)}"]
    start["extra_args"] = [*start["extra_args"], *memory]
    rows = bench.rows_for(prep.x_test, profile.model_rows)
    with bench.stacks([cfg], {cfg.name: start}):
        cfg.upload("rows", rows)
        cfg.upload("heldout", prep.x_test)
        cold = []
        for _ in range(profile.cold_repeats):
            info = local_stack.redeploy(cfg.state_dir)
            cfg.info = info
            call = cfg.call("rows")
            cold.append(call)
        warm = [cfg.call("rows") for _ in range(profile.repeats)]
        answered = cfg.call("heldout")["labels"]
    expected = entry["expected"]
    agreement = float(np.mean(answered == expected.predict(prep.x_test))) if expected else None
    seconds = [w["seconds"] for w in warm]
    return {
        "model": entry["model"],
        "format": entry["format"],
        "memory_mb": memory_mb(profile),
        "rows": profile.model_rows,
        "cold_first_response_ms_p50": float(np.median([c["seconds"] for c in cold])) * 1000,
        "cold_init_ms_p50": float(np.median([c["init_ms"] or 0 for c in cold])),
        "all_cold": all(c["cold"] for c in cold),
        "warm_ms_p50": float(np.percentile(seconds, 50)) * 1000,
        "warm_ms_p95": float(np.percentile(seconds, 95)) * 1000,
        "warm_function_ms_p50": float(
            np.median([w["function_ms"] for w in warm if w["function_ms"] is not None] or [0])
        ),
        "accuracy": float(np.mean(answered == prep.y_test)),
        "agreement_with_the_model": agreement,
        "shipped_bytes": entry["shipped"],
        "fit_seconds": entry.get("fit_seconds"),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table."""
    mb = 1024 * 1024
    lines = [
        f"| model | cold start (ms, p50) | init (ms) | warm {rows[0]['rows']:,} rows p50 / p95 "
        "(ms) | accuracy | agreement | shipped MB (requirements + code + model) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r["shipped_bytes"]
        agreement = r["agreement_with_the_model"]
        agree = "-" if agreement is None else f"{agreement:.2%}"
        lines.append(
            f"| {r['model']} | {r['cold_first_response_ms_p50']:,.0f} | "
            f"{r['cold_init_ms_p50']:,.0f} | {r['warm_ms_p50']:,.0f} / {r['warm_ms_p95']:,.0f} | "
            f"{r['accuracy']:.4f} | {agree} | {s['total'] / mb:,.1f} "
            f"({s['requirements'] / mb:,.1f} + {s['code'] / mb:,.2f} + {s['model'] / mb:,.2f}) |"
        )
    return "\n".join(lines)
