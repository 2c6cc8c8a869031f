"""Throughput of a large batch (``predict-batch``'s logic; rows repeat the data) against 1, 2
and 4 function instances.

Each instance count runs ``batch_repeats`` times after one warm-up call per instance (the curve
is about warm throughput), with the machine's default BLAS threads per function and, if asked,
with one BLAS thread per function (closer to Lambda's one vCPU at 1,769 MB).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import batch, local_stack
from mnist_lambda.batch import BatchResult
from mnist_lambda.bench.prepare import Prepared
from mnist_lambda.bench.profile import Profile
from mnist_lambda.tutorial.deployment import NO_STAGE_THROTTLE
from mnist_serving.model import load

WARM_UP_ROWS = 500
"""Rows per instance of the warm-up batch (one chunk each)."""


def batch_report(
    profile: Profile, prep: Prepared, work: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """One row per BLAS thread setting and instance count (see the module docstring)."""
    pixels = np.ascontiguousarray(prep.x_all[np.arange(profile.batch_rows) % len(prep.x_all)])
    expected = load(prep.our_model).predict(pixels)
    runs = []
    for threads in profile.batch_blas_threads:
        for k in profile.batch_instances:
            state = work / f"stack-batch-{threads}-{k}"
            results = batches(state, prep.our_model, pixels, k, threads, profile.batch_repeats)
            if any(not np.array_equal(r.labels, expected) for r in results):
                raise RuntimeError(f"batch with {k} instance(s): labels differ from the model's")
            runs.append(_row(results, k, threads))
            rates = [r.rows_per_second for r in results]
            say(
                f"  {k} instance(s), BLAS threads {threads or 'default'}: "
                f"{np.median(rates):,.0f} rows/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
            )
    return {"rows": profile.batch_rows, "runs": runs}


def serve_args(threads: int) -> list[str]:
    """``mnist-lambda serve`` arguments: no stage throttle; ``threads`` BLAS threads per
    function (0: the machine's default)."""
    extra = list(NO_STAGE_THROTTLE)
    if threads:
        extra += ["-e", f"OPENBLAS_NUM_THREADS={threads}", "-e", f"OMP_NUM_THREADS={threads}"]
    return extra


def batches(
    state: Path, model: Path, pixels: np.ndarray, instances: int, threads: int, repeats: int
) -> list[BatchResult]:
    """``repeats`` batches of ``pixels`` at concurrency ``instances`` on a stack of that many
    instances, after a warm-up chunk per instance; the stack stopped after."""
    try:
        info = local_stack.start(
            state,
            instances=instances,
            model_path=model,
            timeout=120,
            extra_args=serve_args(threads),
        )
        s3 = local_stack.s3_client(info)
        target = {"url": info.predict_url, "s3": s3, "bucket": info.bucket, "progress": False}
        warm_up = pixels[: WARM_UP_ROWS * instances]
        batch.run_batch(warm_up, rows_per_chunk=WARM_UP_ROWS, concurrency=instances, **target)
        return [
            batch.run_batch(pixels, output_prefix="predictions/", concurrency=instances, **target)
            for _ in range(repeats)
        ]
    finally:
        local_stack.stop(state)


def _row(results: list[BatchResult], instances: int, threads: int) -> dict[str, Any]:
    """The median run's summary, with every run's rate."""
    rates = [r.rows_per_second for r in results]
    median = results[int(np.argsort(rates)[len(rates) // 2])]
    return {
        "instances": instances,
        "blas_threads": threads or "default",
        "row_order_preserved": True,
        **median.summary(),
        "rows_per_second": float(np.median(rates)),
        "rows_per_second_all": rates,
    }
