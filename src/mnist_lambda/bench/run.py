"""The benchmark: the tutorial's deployment (A) against ours (B) on the same local stack.

Both configurations are trained on the same 80/20 split of the same MNIST rows
(:mod:`.prepare`), served by two local stacks (moto S3 + ``aws-lambda-rie`` running
``awslambdaric`` + the API Gateway front) started by this process, and called alternately A, B,
A, B (:mod:`.head_to_head`). Reported: cold start, warm latency per request size, artifact and
S3 object bytes, peak memory of the function process, accuracy on the held-out rows, Lambda
cost per million predictions (:mod:`.summary`), how far our predict step is from the machine's
float32 matmul rate (:mod:`.flops`), every kind of model through the stack (:mod:`.models`),
both images with Docker (:mod:`.docker_rows`) and a 70,000-row batch against 1, 2 and 4
function instances (:mod:`.batch_throughput`); written as ``results.json``, ``results.md``
(:mod:`.markdown`) and a figure (:mod:`.figure`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mnist_lambda import storage
from mnist_lambda.bench import docker_rows, head_to_head
from mnist_lambda.bench.batch_throughput import batch_report
from mnist_lambda.bench.figure import make_figure
from mnist_lambda.bench.flops import flops_report
from mnist_lambda.bench.markdown import markdown
from mnist_lambda.bench.models import compare_models
from mnist_lambda.bench.prepare import Prepared, prepare
from mnist_lambda.bench.probes import machine
from mnist_lambda.bench.profile import Profile
from mnist_lambda.bench.summary import summary, targets
from mnist_lambda.paths import project_root

DEFAULT_DATA = "idx:../shared/data/mnist"
FIGURE = "latency_vs_rows.png"


def default_out() -> Path:
    """``outputs/bench/<UTC time>``."""
    return project_root() / "outputs" / "bench" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def progress(verbose: bool) -> Callable[[str], None]:
    """Where progress lines go: stderr, time-stamped (nowhere unless ``verbose``)."""

    def say(msg: str) -> None:
        if verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return say


def run_bench(
    profile: Profile,
    out: str | Path | None = None,
    data_source: str = DEFAULT_DATA,
    verbose: bool = True,
    docker: bool | None = False,
) -> dict[str, Any]:
    """Run the whole comparison; write ``results.json``, ``results.md`` and the figure in
    ``out`` (default: :func:`default_out`). ``docker``: add the images built and served with
    Docker (None: when an engine answers; True without one: an error, before anything runs)."""
    docker_skipped = docker_rows.skip_reason(docker)
    say, started = progress(verbose), time.perf_counter()
    out_dir = Path(out) if out else default_out()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    results: dict[str, Any] = {"profile": asdict(profile), "machine": machine()}
    try:
        say("loading data and training both models")
        prep = prepare(profile, data_source, work)
        results["data"] = prep.facts()
        results.update(head_to_head.measure(profile, prep, work, say))
        results["flops"] = flops_report(results["warm"], prep, profile)
        results.update(optional_parts(profile, prep, work, say, docker_skipped))
        results["summary"] = summary(results, profile)
        results["targets"] = targets(results, profile)
        results["bench_seconds"] = time.perf_counter() - started
        write(results, profile, out_dir)
        say(f"done in {results['bench_seconds']:.0f} s: {out_dir}")
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def optional_parts(
    profile: Profile,
    prep: Prepared,
    work: Path,
    say: Callable[[str], None],
    docker_skipped: str | None,
) -> dict[str, Any]:
    """The model comparison, the Docker rows and the batch, as far as the profile asks."""
    parts: dict[str, Any] = {}
    if profile.onnx_models:
        say(f"models: the tutorial's, ours and {', '.join(profile.onnx_models)} (ONNX)")
        parts["models"] = compare_models(profile, prep, work, say)
    if docker_skipped is None:
        parts["docker"] = docker_rows.measure(profile, prep, work, say)
    else:
        say(f"docker rows {docker_skipped}")
        parts["docker"] = {"skipped": docker_skipped}
    if profile.batch_instances:
        say(f"batch of {profile.batch_rows:,} rows, {profile.batch_instances} instances")
        parts["batch"] = batch_report(profile, prep, work, say)
    return parts


def write(results: dict[str, Any], profile: Profile, out_dir: Path) -> None:
    """The figure, ``results.md`` and ``results.json`` (which names all three) in ``out_dir``."""
    figure = out_dir / FIGURE
    make_figure(results, profile, figure)
    results["paths"] = {
        "results": str(out_dir / "results.json"),
        "figure": str(figure),
        "table": str(out_dir / "results.md"),
    }
    storage.atomic_write_text(out_dir / "results.md", markdown(results, profile))
    storage.atomic_write_json(out_dir / "results.json", results)
