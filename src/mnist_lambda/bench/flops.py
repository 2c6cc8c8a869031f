"""How far our predict step is from this machine's float32 matmul rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_lambda.bench.prepare import Prepared
from mnist_lambda.bench.probes import sgemm_gflops
from mnist_lambda.bench.profile import B, Profile
from mnist_serving.schema import N_PIXELS

FORMULA = (
    "2*n*784*c (PCA) + n*784 (centring) + 2*n*(c+1)*n_train (distance matmul) "
    "+ n*n_train (group minima)"
)


def predict_flops(n: int, n_train: int, c: int) -> float:
    """What ``model.py`` computes for ``n`` rows: the PCA projection, then ``[z, 1] @ [-2 T^T;
    |t|^2]`` (``c + 1`` inner dimension), then one comparison per distance for the per-group
    minima."""
    d = N_PIXELS
    return 2.0 * n * d * c + n * d + 2.0 * n * (c + 1) * n_train + n * n_train


def flops_report(warm: dict[str, Any], prep: Prepared, profile: Profile) -> dict[str, Any]:
    """Our predict step's floating-point rate at the largest size (from the ``warm`` calls)
    against this machine's sgemm rate, at 2048³ and at our distance matmul's shape."""
    n, c, n_train = max(profile.sizes), prep.n_components, len(prep.x_train)
    flops = predict_flops(n, n_train, c)
    predict_ms = [w["predict_ms"] for w in warm[B][str(n)] if w["predict_ms"]]
    seconds = float(np.median(predict_ms)) / 1000
    peak = sgemm_gflops(2048, 2048, 2048)
    same_shape = sgemm_gflops(512, c + 1, n_train)  # model.CHUNK_ROWS rows per block
    achieved = flops / seconds / 1e9
    return {
        "rows": n,
        "flops": flops,
        "formula": FORMULA,
        "predict_ms_p50": seconds * 1000,
        "achieved_gflops": achieved,
        "sgemm_gflops_2048": peak,
        "sgemm_gflops_same_shape": same_shape,
        "share_of_sgemm_peak": achieved / peak,
        "share_of_same_shape_sgemm": achieved / same_shape,
    }
