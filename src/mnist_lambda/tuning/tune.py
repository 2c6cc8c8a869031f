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
     "traffic": what mnist_lambda.tuning.traffic.run.what_if returned,                 # if asked
     "paths": {tune_json, figure, stacks}, "tune_seconds": ...}

``usd_per_million`` is per million predictions (rows), at the setting's warm p50, for both
architectures; arm64 at the duration measured here (an x86 machine), so only its price differs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import local_stack, storage
from mnist_lambda.aws_limits import check_memory_size
from mnist_lambda.bench.prepare import rows_for
from mnist_lambda.bench.probes import machine
from mnist_lambda.modeling.options import ModelOptions
from mnist_lambda.modeling.sampling import SPLIT_FILES, Split
from mnist_lambda.paths import outputs_dir
from mnist_lambda.pricing import PRICES
from mnist_lambda.progress_bar import progress_bar
from mnist_lambda.template import MEMORY_PARAMETER
from mnist_lambda.template.reader import function_settings
from mnist_lambda.tuning import recommend as rules
from mnist_lambda.tuning import report, sweep, variants
from mnist_lambda.tuning.traffic import report as traffic_report
from mnist_lambda.tuning.traffic import run as traffic
from mnist_lambda.tutorial.deployment import TUTORIAL_MEMORY_MB
from mnist_serving.loading import default_model_path, load_model
from mnist_serving.model import file_sha256

DEFAULT_MEMORY = (512, 1024, 1769, 2048, 3008)
DEFAULT_WARM = 10
DEFAULT_ROWS = 1000
DEFAULT_TRAFFIC_DURATION_S = 30.0

DURATIONS = (
    "cold: the client's wall-clock of the first call after a redeploy (init included); warm: "
    "the emulator's function duration (what Lambda bills), the client's wall-clock if the "
    "emulator reports none"
)
COST = (
    "usd_per_million: per million predictions (rows) at the warm p50, {arch: {lambda, "
    "api_gateway, total}} for x86_64 and arm64 (arm64 at the duration measured on this machine)"
)


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
    return tuple(check_memory_size(v) for v in values)


def is_run(folder: Path) -> bool:
    """A run folder with a serving model and a data split."""
    data = folder / "data"
    return run_model(folder).is_file() and all(
        (data / f"{name}.npy").is_file() for name in SPLIT_FILES
    )


def latest_run(outputs: Path | None = None) -> Path:
    """The run under ``outputs/`` whose model was written last; TuneError if there is none."""
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
    if run_dir is not None:
        return run_dir / "tune"
    return outputs_dir() / "tune" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def run_model(run: Path) -> Path:
    """The serving model of a run (``model/model.npz`` or ``model/model.onnx``, as its
    manifest says)."""
    return default_model_path(run / "model")


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
    auth: str = "none",
) -> dict[str, Any]:
    """Sweep ``memory`` (MB) for ``variant_names`` and write ``tune.json`` and ``tune.png`` in
    ``out``; return what tune.json holds.

    The model and rows come from ``run_dir`` (its serving model, ``rows`` of ``data/X_test``,
    repeated if there are fewer) unless ``model_path``/``pixels`` are given. Each variant runs on
    its own one-environment stack (``out/stack``, ``out/stack-tutorial``), stopped at the end;
    the tutorial's is swept over ``memory`` plus its own ``tutorial_memory_mb`` (5,000 MB).
    With ``traffic_rates``, ours is redeployed at the recommended memory and
    :func:`mnist_lambda.tuning.traffic.run.what_if` runs on the same stack. With ``snapstart``,
    each of ours' settings also gets a cold start on a SnapStart deployment (emulated restore).
    ``auth`` (``none``, ``iam``, ``api_key``): ours behind that template, called as its caller.
    """
    started = time.perf_counter()
    memory = parse_memory(memory)
    unknown = sorted(set(variant_names) - set(variants.VARIANTS))
    if unknown or not variant_names:
        raise ValueError(f"variants must be among {', '.join(variants.VARIANTS)}, not {unknown}")
    if warm < 1 or rows < 1:
        raise ValueError(f"warm ({warm}) and rows ({rows}) must be at least 1")
    inputs = _inputs(run_dir, model_path, pixels, rows)
    out_dir = Path(out) if out else default_out(inputs.run)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(variant_names, memory, tutorial_memory_mb or TUTORIAL_MEMORY_MB, inputs.split)
    doc: dict[str, Any] = {
        "machine": machine(),
        "settings": _settings(inputs, plan, memory=memory, warm=warm, pixels_given=pixels),
        "results": [],
        "recommendation": None,
    }
    stacks = {variants.OURS: out_dir / "stack", variants.TUTORIAL: out_dir / "stack-tutorial"}
    bar = progress_bar(
        total=sum(len(m) for _, m in plan),
        desc="MemorySize sweep",
        unit="setting",
        disable=not progress,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-tune-", ignore_cleanup_errors=True) as work:
            for name, mems in plan:
                variant = _variant(name, inputs, Path(work), auth)
                limits, sections = _sweep_variant(
                    variant, stacks[name], mems, warm=warm, bar=bar if progress else None,
                    snapstart=snapstart and name == variants.OURS,
                    traffic_rates=traffic_rates, traffic_duration_s=traffic_duration_s,
                )  # fmt: skip
                doc["machine"]["limits"] = limits
                doc |= sections
    finally:
        bar.close()
    doc["paths"] = _figures(doc, out_dir) | {
        "tune_json": str(out_dir / "tune.json"),
        "figure": str(out_dir / "tune.png"),
        "stacks": {name: str(stacks[name]) for name, _ in plan},
    }
    doc["tune_seconds"] = time.perf_counter() - started
    storage.atomic_write_json(out_dir / "tune.json", doc)
    return doc


@dataclass(frozen=True)
class _Inputs:
    """What a sweep deploys and sends: the run (if any) and its split, the model, the rows."""

    run: Path | None
    split: Split | None
    model: Path
    rows: np.ndarray


def _inputs(
    run_dir: str | Path | None,
    model_path: str | Path | None,
    pixels: np.ndarray | None,
    rows: int,
) -> _Inputs:
    """The run (the latest if neither it nor a model and pixels are given), model and rows."""
    run = Path(run_dir).resolve() if run_dir else None
    if run is None and (model_path is None or pixels is None):
        run = latest_run()
    if run is not None and not is_run(run):
        raise TuneError(f"{run} has no model/ and data/ split: run the pipeline first")
    split = Split.load(run / "data") if run is not None else None
    model = Path(model_path) if model_path else run_model(run)  # type: ignore[arg-type]
    source = pixels if pixels is not None else split.X_test  # type: ignore[union-attr]
    chosen = np.ascontiguousarray(rows_for(np.asarray(source), rows), dtype=np.uint8)
    return _Inputs(run, split, model, chosen)


def _plan(
    variant_names: Sequence[str],
    memory: tuple[int, ...],
    tutorial_memory_mb: int,
    split: Split | None,
) -> list[tuple[str, tuple[int, ...]]]:
    """Each variant asked for with the MemorySize values it is swept over, ours first."""
    plan: list[tuple[str, tuple[int, ...]]] = []
    if variants.OURS in variant_names:
        plan.append((variants.OURS, memory))
    if variants.TUTORIAL in variant_names:
        if split is None:
            raise TuneError(
                "the tutorial's variant is fitted on a run's training data: give --run"
            )
        plan.append((variants.TUTORIAL, tuple(sorted({*memory, tutorial_memory_mb}))))
    return plan


def _settings(
    inputs: _Inputs,
    plan: list[tuple[str, tuple[int, ...]]],
    *,
    memory: tuple[int, ...],
    warm: int,
    pixels_given: np.ndarray | None,
) -> dict[str, Any]:
    """tune.json's ``settings``: what was swept, how, and at which prices."""
    return {
        "run": str(inputs.run) if inputs.run else None,
        "model": str(inputs.model),
        "model_sha256": file_sha256(inputs.model),
        "rows": len(inputs.rows),
        "rows_source": "the run's data/X_test.npy" if pixels_given is None else "given pixels",
        "warm_calls": warm,
        "memory_mb": list(memory),
        "variants": [name for name, _ in plan],
        "instances": 1,
        "tolerance": rules.TOLERANCE,
        "prices": PRICES.as_dict(),
        "durations": DURATIONS,
        "cost": COST,
    }


def _variant(name: str, inputs: _Inputs, work: Path, auth: str = "none") -> variants.Variant:
    """Ours serving the run's model (behind ``auth``), or the tutorial's fitted on the run's
    training rows."""
    if name == variants.OURS:
        return variants.ours(inputs.model, inputs.rows, auth)
    assert inputs.split is not None
    split = inputs.split
    return variants.tutorial(
        split.X_train,
        split.y_train,
        inputs.rows,
        work / "tutorial_app",
        _n_neighbors(inputs.model),
    )


def _sweep_variant(
    variant: variants.Variant,
    state_dir: Path,
    memory: tuple[int, ...],
    *,
    warm: int,
    bar: Any,
    snapstart: bool,
    traffic_rates: Sequence[float],
    traffic_duration_s: float,
) -> tuple[str, dict[str, Any]]:
    """One variant's stack swept over ``memory``: the sandbox's limits and tune.json's sections
    for it. Ours also gets the traffic what-if at the recommended memory, if rates are given."""
    with sweep.deployed(variant, state_dir, memory[0]) as info:
        limits = (info.raw.get("sandbox") or {}).get("limits", "?")
        results = sweep.sweep(variant, state_dir, info, memory, warm, bar, snapstart=snapstart)
        recommendation = _recommend(results)
        if variant.name != variants.OURS:
            tutorial = {
                "description": variant.description,
                "memory_mb": list(memory),
                "results": results,
                "recommendation": recommendation,
            }
            return limits, {"tutorial": tutorial}
        sections = {"results": results, "recommendation": recommendation}
        if traffic_rates and (memory_mb := recommendation["memory_mb"]) is not None:
            sections["traffic"] = _traffic(
                state_dir, variant, memory_mb, traffic_rates, traffic_duration_s
            )
        return limits, sections


def _recommend(results: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        return rules.recommend(results)
    except ValueError as exc:
        return {"memory_mb": None, "rule": rules.RULE, "error": str(exc)}


def _n_neighbors(model: Path) -> int:
    """The serving model's k (the tutorial's, for a model that is not a k-NN): the tutorial's
    k-NN votes with as many neighbours."""
    return int(getattr(load_model(model), "n_neighbors", ModelOptions().n_neighbors))


def _traffic(
    state_dir: Path,
    variant: variants.Variant,
    memory_mb: int,
    rates: Sequence[float],
    duration_s: float,
) -> dict[str, Any]:
    """The traffic what-if on the sweep's stack at ``memory_mb``, under the template's stage
    throttle (the sweep itself lifts it to measure the function alone)."""
    info = local_stack.redeploy(state_dir, parameters={MEMORY_PARAMETER: str(memory_mb)})
    throttle = function_settings().throttle
    return traffic.what_if(
        state_dir=state_dir,
        info=info,
        bucket=info.bucket,
        key=variant.key,
        rates=[float(r) for r in rates],
        duration_s=duration_s,
        environments=None,
        seed=0,
        throttle=None if throttle is None else (throttle.rate_limit, throttle.burst_limit),
    )


def _figures(doc: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """tune.png, and traffic.png if the what-if ran; the traffic figure's path."""
    report.save_png(report.figure(doc), out_dir / "tune.png")
    if "traffic" not in doc:
        return {}
    report.save_png(traffic_report.figure(doc["traffic"]), out_dir / "traffic.png")
    return {"traffic_figure": str(out_dir / "traffic.png")}
