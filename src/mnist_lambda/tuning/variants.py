"""The variants a sweep measures: ours (the numpy model) and the tutorial's (joblib k-NN).

Each is what :func:`mnist_lambda.local_stack.start` needs to serve it, the request object it
reads from S3 and the labels its model gives in-process (what every answer must equal). The
tutorial's is built as ``mnist-lambda bench`` builds it (:mod:`mnist_lambda.tutorial`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.deploy.s3_data import npy_bytes
from mnist_lambda.local_stack import auth_start_kwargs
from mnist_lambda.modeling.options import ModelOptions
from mnist_lambda.tutorial.deployment import (
    NO_STAGE_THROTTLE,
    TUTORIAL_MEMORY_MB,
    tutorial_start_args,
    tutorial_task_root,
)
from mnist_lambda.tutorial.model import fit_tutorial_model, tutorial_labels, tutorial_object
from mnist_serving.loading import load_model

OURS, TUTORIAL = "ours", "tutorial"
VARIANTS = (OURS, TUTORIAL)


@dataclass(frozen=True)
class Variant:
    """One variant's deployment: how to start its stack, the object it is sent, the labels
    expected."""

    name: str
    start_kwargs: dict[str, Any]
    key: str
    body: bytes = field(repr=False)
    expected: np.ndarray = field(repr=False)
    description: str = ""


def ours(model_path: Path, pixels: np.ndarray, auth: str = "none") -> Variant:
    """Our function (``lambda_app/``) serving ``model_path`` behind ``auth``'s template (its
    callers sign or send the key: :func:`mnist_lambda.local_stack.endpoint_auth`), the stage's
    throttle and an API key's usage plan lifted; the rows as plain ``.npy``."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return Variant(
        name=OURS,
        start_kwargs={
            "model_path": Path(model_path),
            **auth_start_kwargs(auth, NO_STAGE_THROTTLE, unlimited_plan=True),
        },
        key=f"tune/rows-{len(pixels)}.npy",
        body=npy_bytes(pixels),
        expected=load_model(Path(model_path)).predict(pixels),
        description=f"lambda_app/ serving {Path(model_path).name}, .npy request objects",
    )


def tutorial(
    x_train: np.ndarray,
    y_train: np.ndarray,
    pixels: np.ndarray,
    work: Path,
    n_neighbors: int = ModelOptions().n_neighbors,
) -> Variant:
    """The tutorial's function (scikit-learn k-NN on raw pixels, joblib'd) in ``work``, fitted on
    ``x_train``; the rows as a joblib'd float64 DataFrame, as its client sent them."""
    knn = fit_tutorial_model(x_train, y_train, n_neighbors)
    app_dir = tutorial_task_root(knn, Path(work))
    serve_args = tutorial_start_args(TUTORIAL_MEMORY_MB)  # MemorySize set per setting
    return Variant(
        name=TUTORIAL,
        start_kwargs={"app_dir": app_dir, "extra_args": serve_args},
        key=f"tune/rows-{len(pixels)}.joblib",
        body=tutorial_object(pixels),
        expected=tutorial_labels(knn, pixels),
        description="the tutorial's handler (tutorial/app): joblib k-NN with scikit-learn "
        f"and pandas, fitted on {len(x_train):,} rows; joblib'd float64 DataFrame objects",
    )
