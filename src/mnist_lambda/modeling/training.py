"""Train the tutorial's baseline and the serving model, cross-validate, time and export them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from mnist_lambda.modeling.options import ModelOptions
from mnist_lambda.modeling.sampling import Split
from mnist_lambda.progress_bar import progress_bar
from mnist_lambda.provenance import library_versions
from mnist_lambda.storage import atomic_path, atomic_write_json
from mnist_serving import model as serving_model
from mnist_serving.schema import INPUT_SCHEMA


@dataclass
class ModelReport:
    """What the comparison table and ``metrics.json`` say about one model."""

    name: str
    cv_scores: list[float]
    test_accuracy: float
    confusion_matrix: np.ndarray
    fit_seconds: float
    predict_seconds: float
    artifact_bytes: int
    load_seconds: float
    artifact: str
    predictions: np.ndarray = field(repr=False)

    @property
    def cv_mean(self) -> float:
        return float(np.mean(self.cv_scores)) if self.cv_scores else float("nan")

    @property
    def cv_std(self) -> float:
        return float(np.std(self.cv_scores)) if self.cv_scores else float("nan")

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` entry for this model."""
        return {
            "cv_mean": self.cv_mean,
            "cv_std": self.cv_std,
            "cv_scores": self.cv_scores,
            "test_accuracy": self.test_accuracy,
            "confusion_matrix": self.confusion_matrix.tolist(),
            "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds,
            "artifact_bytes": self.artifact_bytes,
            "load_seconds": self.load_seconds,
            "artifact": self.artifact,
        }


def make_baseline(options: ModelOptions) -> KNeighborsClassifier:
    """The tutorial's model: k-NN with distance weights on raw pixels."""
    return KNeighborsClassifier(n_neighbors=options.n_neighbors, weights="distance")


def make_serving(options: ModelOptions) -> Pipeline:
    """The serving model as scikit-learn fits it: float32 pixels -> PCA -> distance k-NN."""
    pca = PCA(n_components=options.pca_components, random_state=options.random_state)
    return Pipeline([("pca", pca), ("knn", make_baseline(options))])


def cross_validate(
    make_estimator: Callable[[], ClassifierMixin],
    X: np.ndarray,
    y: np.ndarray,
    *,
    folds: int,
    random_state: int,
    desc: str = "cross-validation",
) -> list[float]:
    """Stratified k-fold accuracy, one fold at a time behind a progress bar."""
    if folds < 2:
        return []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    scores = []
    for train_idx, val_idx in progress_bar(
        splitter.split(X, y), total=folds, desc=desc, unit="fold"
    ):
        estimator = make_estimator().fit(X[train_idx], y[train_idx])
        scores.append(float(accuracy_score(y[val_idx], estimator.predict(X[val_idx]))))
    return scores


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def reload_and_evaluate(
    name: str,
    artifact: str | Path,
    load: Callable[[str | Path], Any],
    X_test: np.ndarray,
    y_test: np.ndarray,
    cv_scores: list[float],
    fit_seconds: float,
) -> tuple[ModelReport, Any]:
    """Load a saved model back, time that and its predictions on the test set, and report."""
    loaded, load_seconds = _timed(lambda: load(artifact))
    predictions, predict_seconds = _timed(lambda: loaded.predict(X_test))
    report = ModelReport(
        name=name,
        cv_scores=cv_scores,
        test_accuracy=float(accuracy_score(y_test, predictions)),
        confusion_matrix=confusion_matrix(y_test, predictions, labels=np.arange(10)),
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
        artifact_bytes=Path(artifact).stat().st_size,
        load_seconds=load_seconds,
        artifact=str(artifact),
        predictions=np.asarray(predictions, dtype=np.int64),
    )
    return report, loaded


def train_baseline(
    split: Split, artifact: str | Path, cv_scores: list[float], options: ModelOptions
) -> ModelReport:
    """Fit the tutorial's model on float64 pixels and save it with joblib, as the tutorial did.

    The joblib file is a local comparison artifact only: it is never uploaded or served.
    """
    model, fit_seconds = _timed(
        lambda: make_baseline(options).fit(split.X_train.astype(np.float64), split.y_train)
    )
    with atomic_path(artifact) as tmp:
        joblib.dump(model, tmp)
    report, _ = reload_and_evaluate(
        "baseline",
        artifact,
        joblib.load,
        split.X_test.astype(np.float64),
        split.y_test,
        cv_scores,
        fit_seconds,
    )
    return report


def export_serving_model(
    pipeline: Pipeline, X_train: np.ndarray, y_train: np.ndarray
) -> serving_model.DigitModel:
    """Turn a fitted PCA + k-NN pipeline into the numpy-only serving model.

    The training digits are projected with the serving code itself, so what the endpoint
    compares against is exactly what the notebook compares against.
    """
    pca: PCA = pipeline.named_steps["pca"]
    knn: KNeighborsClassifier = pipeline.named_steps["knn"]
    classes = np.asarray(knn.classes_, dtype=np.int64)
    mean = pca.mean_.astype(np.float32)
    components = pca.components_.astype(np.float32)
    return serving_model.DigitModel(
        mean=mean,
        components=components,
        train_proj=serving_model.project(X_train, mean, components).astype(np.float32),
        train_labels=np.searchsorted(classes, y_train).astype(np.int64),
        classes=classes,
        n_neighbors=int(knn.n_neighbors),
    )


def train_serving(
    split: Split,
    artifact: str | Path,
    cv_scores: list[float],
    options: ModelOptions,
) -> tuple[ModelReport, serving_model.DigitModel, float]:
    """Fit PCA + k-NN with scikit-learn, export it to ``.npz``, time load and predict.

    Returns the report, the loaded serving model and the share of test rows on which the
    exported numpy model agrees with the scikit-learn pipeline (expected: 1.0).
    """
    start = time.perf_counter()
    pipeline = make_serving(options)
    pipeline.fit(split.X_train.astype(np.float32), split.y_train)
    exported = export_serving_model(pipeline, split.X_train, split.y_train)
    fit_seconds = time.perf_counter() - start
    exported.save(artifact)
    report, loaded = reload_and_evaluate(
        "serving", artifact, serving_model.load, split.X_test, split.y_test, cv_scores, fit_seconds
    )
    agreement = float(
        np.mean(pipeline.predict(split.X_test.astype(np.float32)) == report.predictions)
    )
    return report, loaded, agreement


def most_confused_pairs(cm: np.ndarray, top: int = 5) -> list[tuple[int, int, int]]:
    """The ``top`` (true, predicted, count) off-diagonal cells of a confusion matrix."""
    off = np.array(cm, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = [
        (int(i), int(j), int(off[i, j]))
        for i, j in zip(*np.unravel_index(order, off.shape), strict=True)
    ]
    return [p for p in pairs if p[2] > 0]


def build_manifest(
    artifact: str | Path,
    *,
    format: str,
    format_description: str,
    model: dict[str, Any],
    report: ModelReport | None = None,
    metrics: dict[str, Any] | None = None,
    run_id: str,
    data_source: str,
    input_schema: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The fields every serving manifest has, whatever the format, then ``extra``.

    ``metrics`` defaults to the report's test accuracy and cross-validation; ``input_schema``
    to the request schema; ``versions`` to :func:`mnist_lambda.provenance.library_versions`.
    """
    artifact = Path(artifact)
    if metrics is None:
        if report is None:
            raise ValueError("build_manifest needs a report or metrics")
        metrics = {
            "test_accuracy": report.test_accuracy,
            "cv_mean": report.cv_mean,
            "cv_std": report.cv_std,
        }
    return {
        "model_file": artifact.name,
        "format": format,
        "format_description": format_description,
        "sha256": serving_model.file_sha256(artifact),
        "bytes": artifact.stat().st_size,
        "version": run_id,
        "run_id": run_id,
        "model": model,
        "input_schema": dict(INPUT_SCHEMA) if input_schema is None else input_schema,
        "metrics": metrics,
        "data_source": data_source,
        "library_versions": library_versions() if versions is None else versions,
        **extra,
    }


def write_manifest(
    path: str | Path,
    artifact: str | Path,
    report: ModelReport,
    model: serving_model.DigitModel,
    run_id: str,
    n_train: int,
    data_source: str,
) -> dict[str, Any]:
    """Describe the serving artifact next to it: format, sha256, versions, schema, metrics."""
    manifest = build_manifest(
        artifact,
        format=serving_model.FORMAT,
        format_description=(
            "uncompressed numpy .npz of plain numeric arrays (PCA mean and components, "
            "projected training digits, labels, k); loads with np.load(allow_pickle=False), "
            "so loading executes no code"
        ),
        model={
            "type": "PCA + k-nearest neighbours (distance weights)",
            "n_components": model.n_components,
            "n_neighbors": model.n_neighbors,
            "n_train": n_train,
            "classes": model.classes.tolist(),
        },
        report=report,
        run_id=run_id,
        data_source=data_source,
    )
    atomic_write_json(path, manifest)
    return manifest


def comparison_table(reports: list[ModelReport]) -> list[dict[str, Any]]:
    """Rows for the model comparison table."""
    return [
        {
            "model": r.name,
            "cv accuracy": f"{r.cv_mean:.4f} ± {r.cv_std:.4f}" if r.cv_scores else "-",
            "test accuracy": round(r.test_accuracy, 4),
            "fit s": round(r.fit_seconds, 3),
            "predict s (test set)": round(r.predict_seconds, 3),
            "artifact MB": round(r.artifact_bytes / 1e6, 2),
            "load s": round(r.load_seconds, 4),
        }
        for r in reports
    ]
