"""``tune()``: sweep MemorySize for a run's model on the local stack, recommend one, write it up.

::

    doc = tune(Path("outputs/my-run"), memory=(512, 1024, 1769), warm=10)
    doc["recommendation"]["memory_mb"]       # also in outputs/my-run/tune/tune.json

``tune.json`` (every duration in seconds unless the key says ms)::

    {"machine": {cpu_model, cores, memory_gb, ..., "limits": the sandbox's memory/CPU limits},
     "settings": {run, model, model_sha256, rows, rows_source, warm_calls, memory_mb, variants,
                  instances, tolerance, prices (mnist_lambda.pricing's table), durations, cost},
     "results": [{memory_mb, vcpus, rows, error, cold, cold_start_seconds, init_ms,
                  cold_function_ms, warm_calls, warm_cold_calls, warm_seconds, warm_source,
                  warm_client_seconds, warm_p50_seconds, warm_p95_seconds, warm_min_seconds,
                  peak_memory_mb, peak_memory_source, agreement,
                  usd_per_million: {"x86_64": {lambda, api_gateway, total},
                                    "arm64": {lambda, api_gateway, total}}}, ...],
     "recommendation": {memory_mb, rule, tolerance, arch, warm_p50_seconds, usd_per_million,
                        fastest_memory_mb, fastest_warm_p50_seconds, candidates_mb},
     "tutorial": {"description", "memory_mb", "results": [...], "recommendation": {...}},  # if run
     "traffic": what mnist_lambda.tuning.traffic.what_if returned,                     # if asked
     "paths": {tune_json, figure, stacks}, "tune_seconds": ...}

``usd_per_million`` is per million predictions (rows), at the setting's warm p50, for both
architectures; arm64 at the duration measured here (an x86 machine), so only its price differs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import storage
from mnist_lambda.aws_limits import MEMORY_SIZE_RANGE_MB
from mnist_lambda.template import template_path
from mnist_lambda.tuning import recommend as rules
from mnist_lambda.tuning import report, sweep, variants

DEFAULT_MEMORY = (512, 1024, 1769, 2048, 3008)
DEFAULT_WARM = 10
DEFAULT_ROWS = 1000
DEFAULT_TRAFFIC_DURATION_S = 30.0


class TuneError(RuntimeError):
    """The inputs of a sweep are missing; the message says what to run."""


def parse_memory(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"512,1024"`` (or a list) -> (512, 1024), each a MemorySize Lambda accepts, in the
    order given."""
    items = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(dict.fromkeys(int(v) for v in items if str(v)))
    except ValueError:
        raise ValueError(f"memory list {text!r}: comma-separated MB values expected") from None
    if not values:
        raise ValueError("the memory list is empty")
    low, high = MEMORY_SIZE_RANGE_MB
    if bad := [v for v in values if not low <= v <= high]:
        raise ValueError(f"MemorySize must be {low}-{high} MB, not {bad}")
    return values


def is_run(folder: Path) -> bool:
    """A run folder with a serving model and a data split."""
    from mnist_lambda.modeling.sampling import SPLIT_FILES

    data = folder / "data"
    return run_model(folder).is_file() and all(
        (data / f"{name}.npy").is_file() for name in SPLIT_FILES
    )


def latest_run(outputs: Path | None = None) -> Path:
    """The run under ``outputs/`` whose model was written last; TuneError if there is none."""
    from mnist_lambda.paths import outputs_dir

    outputs = Path(outputs) if outputs else outputs_dir()
    runs = [d for d in outputs.iterdir() if d.is_dir() and is_run(d)] if outputs.is_dir() else []
    if not runs:
        raise TuneError(
            f"no run with a model and data under {outputs}: run `mnist-lambda run --steps "
            "sample,train` first, or give --run DIR (or --model and --pixels)"
        )
    return max(runs, key=lambda d: run_model(d).stat().st_mtime)


def default_out(run_dir: Path | None) -> Path:
    """``<run>/tune``, or ``outputs/tune/<UTC time>`` without a run."""
    from mnist_lambda.paths import outputs_dir

    if run_dir is not None:
        return run_dir / "tune"
    return outputs_dir() / "tune" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _template_throttle() -> tuple[float, int]:
    """The stage throttle (rate, burst) the project's template deploys by default."""
    from mnist_lambda.template.reader import load_template

    params = load_template(template_path())["Parameters"]
    return float(params["ThrottleRateLimit"]["Default"]), int(
        params["ThrottleBurstLimit"]["Default"]
    )


def _recommend(results: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        return rules.recommend(results)
    except ValueError as exc:
        return {"memory_mb": None, "rule": rules.RULE, "error": str(exc)}


def tune(
    run_dir: str | Path | None = None,
    *,
    out: str | Path | None = None,
    model_path: str | Path | None = None,
    pixels: np.ndarray | None = None,
    memory: Sequence[int] = DEFAULT_MEMORY,
    warm: int = DEFAULT_WARM,
    rows: int = DEFAULT_ROWS,
    variant_names: Sequence[str] = (variants.OURS,),
    tutorial_memory_mb: int | None = None,
    traffic_rates: Sequence[float] = (),
    traffic_duration_s: float = DEFAULT_TRAFFIC_DURATION_S,
    snapstart: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Sweep ``memory`` (MB) for ``variant_names`` and write ``tune.json`` and ``tune.png`` in
    ``out``; return what tune.json holds.

    The model and rows come from ``run_dir`` (its serving model, ``rows`` of ``data/X_test``,
    repeated if there are fewer) unless ``model_path``/``pixels`` are given. Each variant runs on
    its own one-environment stack (``out/stack``, ``out/stack-tutorial``), stopped at the end;
    the tutorial's is swept over ``memory`` plus its own ``tutorial_memory_mb`` (5,000 MB).
    With ``traffic_rates``, ours is redeployed at the recommended memory and
    :func:`mnist_lambda.tuning.traffic.what_if` runs on the same stack. With ``snapstart``, each
    of ours' settings also gets a cold start on a SnapStart deployment (emulated restore).
    """
    from tqdm import tqdm

    from mnist_lambda.bench.probes import machine
    from mnist_lambda.bench.profile import TUTORIAL_MEMORY_MB
    from mnist_lambda.bench.run import rows_for
    from mnist_lambda.modeling.sampling import Split
    from mnist_lambda.pricing import PRICES
    from mnist_serving.model import file_sha256

    started = time.perf_counter()
    memory = parse_memory(memory)
    unknown = sorted(set(variant_names) - set(variants.VARIANTS))
    if unknown or not variant_names:
        raise ValueError(f"variants must be among {', '.join(variants.VARIANTS)}, not {unknown}")
    if warm < 1 or rows < 1:
        raise ValueError(f"warm ({warm}) and rows ({rows}) must be at least 1")
    run = Path(run_dir).resolve() if run_dir else None
    if run is None and (model_path is None or pixels is None):
        run = latest_run()
    if run is not None and not is_run(run):
        raise TuneError(f"{run} has no model/ and data/ split: run the pipeline first")
    split = Split.load(run / "data") if run is not None else None
    model = Path(model_path) if model_path else run_model(run)  # type: ignore[arg-type]
    source = pixels if pixels is not None else split.X_test  # type: ignore[union-attr]
    chosen = np.ascontiguousarray(rows_for(np.asarray(source), rows), dtype=np.uint8)
    out_dir = Path(out) if out else default_out(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    tutorial_memory_mb = tutorial_memory_mb or TUTORIAL_MEMORY_MB
    plan: list[tuple[str, tuple[int, ...]]] = [(variants.OURS, memory)]
    if variants.TUTORIAL in variant_names:
        if split is None:
            raise TuneError(
                "the tutorial's variant is fitted on a run's training data: give --run"
            )
        plan.append((variants.TUTORIAL, tuple(sorted({*memory, tutorial_memory_mb}))))
    if variants.OURS not in variant_names:
        plan = plan[1:]

    doc: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "run": str(run) if run else None,
            "model": str(model),
            "model_sha256": file_sha256(model),
            "rows": rows,
            "rows_source": "the run's data/X_test.npy" if pixels is None else "given pixels",
            "warm_calls": warm,
            "memory_mb": list(memory),
            "variants": [name for name, _ in plan],
            "instances": 1,
            "tolerance": rules.TOLERANCE,
            "prices": PRICES.as_dict(),
            "durations": "cold: the client's wall-clock of the first call after a redeploy "
            "(init included); warm: the emulator's function duration (what Lambda bills), the "
            "client's wall-clock if the emulator reports none",
            "cost": "usd_per_million: per million predictions (rows) at the warm p50, "
            "{arch: {lambda, api_gateway, total}} for x86_64 and arm64 (arm64 at the duration "
            "measured on this machine)",
        },
        "results": [],
        "recommendation": None,
    }
    stacks = {variants.OURS: out_dir / "stack", variants.TUTORIAL: out_dir / "stack-tutorial"}
    total = sum(len(m) for _, m in plan)
    bar = tqdm(total=total, file=sys.stderr, unit="setting", disable=not progress)
    work = Path(tempfile.mkdtemp(prefix="mnist-tune-"))
    try:
        for name, mems in plan:
            if name == variants.OURS:
                deployment = variants.ours(model, chosen)
            else:
                assert split is not None
                n_neighbors = _n_neighbors(model)
                deployment = variants.tutorial(
                    split.X_train, split.y_train, chosen, work / "tutorial_app", n_neighbors
                )
            state_dir = stacks[name]
            with sweep.deployed(deployment, state_dir, mems[0]) as info:
                doc["machine"]["limits"] = (info.raw.get("sandbox") or {}).get("limits", "?")
                results = sweep.sweep(
                    deployment,
                    state_dir,
                    info,
                    mems,
                    warm,
                    bar if progress else None,
                    snapstart=snapstart and name == variants.OURS,
                )
                recommendation = _recommend(results)
                if name == variants.OURS:
                    doc["results"], doc["recommendation"] = results, recommendation
                    if traffic_rates and recommendation["memory_mb"] is not None:
                        doc["traffic"] = _traffic(
                            state_dir, deployment, recommendation["memory_mb"], traffic_rates,
                            traffic_duration_s,
                        )  # fmt: skip
                else:
                    doc["tutorial"] = {
                        "description": deployment.description,
                        "memory_mb": list(mems),
                        "results": results,
                        "recommendation": recommendation,
                    }
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    figure_path = out_dir / "tune.png"
    report.save_png(report.figure(doc), figure_path)
    doc["paths"] = {}
    if "traffic" in doc:
        from mnist_lambda.tuning.traffic import traffic_figure

        report.save_png(traffic_figure(doc["traffic"]), out_dir / "traffic.png")
        doc["paths"]["traffic_figure"] = str(out_dir / "traffic.png")
    doc["paths"] |= {
        "tune_json": str(out_dir / "tune.json"),
        "figure": str(figure_path),
        "stacks": {name: str(stacks[name]) for name, _ in plan},
    }
    doc["tune_seconds"] = time.perf_counter() - started
    storage.atomic_write_json(out_dir / "tune.json", doc)
    return doc


def _n_neighbors(model: Path) -> int:
    """The serving model's k (4, the tutorial's, for a model that is not a k-NN): the
    tutorial's k-NN votes with as many neighbours."""
    from mnist_serving.loading import load_model

    return int(getattr(load_model(model), "n_neighbors", 4))


def run_model(run: Path) -> Path:
    """The serving model of a run (``model/model.npz`` or ``model/model.onnx``, as its
    manifest says)."""
    from mnist_serving.loading import default_model_path

    return default_model_path(run / "model")


def _traffic(
    state_dir: Path,
    deployment: variants.Deployment,
    memory_mb: int,
    rates: Sequence[float],
    duration_s: float,
) -> dict[str, Any]:
    """The traffic what-if on the sweep's stack at ``memory_mb``, under the template's stage
    throttle (the sweep itself lifts it to measure the function alone)."""
    from mnist_lambda import local_stack
    from mnist_lambda.tuning import traffic

    info = local_stack.redeploy(state_dir, parameters={"MemorySize": str(memory_mb)})
    return traffic.what_if(
        state_dir=state_dir,
        info=info,
        bucket=info.bucket,
        key=deployment.key,
        rates=[float(r) for r in rates],
        duration_s=duration_s,
        environments=None,
        seed=0,
        throttle=_template_throttle(),
    )
