"""Fit a candidate, export it as it would ship, load it back through the serving runtime, time it.

``pca_knn`` goes to numpy ``.npz`` (:func:`mnist_lambda.modeling.training.train_serving`); every
other candidate to ONNX (:func:`mnist_lambda.modeling.onnx_export.export_onnx`), shipped only
after its labels equal scikit-learn's on the whole test split through the serving runtime.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score

from mnist_lambda.modeling import onnx_export, training
from mnist_lambda.modeling.candidates import Candidate
from mnist_lambda.modeling.sampling import Split
from mnist_serving import loading

PREDICT_ROWS = 1000
"""Rows of the in-process prediction timing."""


@dataclass
class CandidateResult:
    """A fitted, exported and reloaded candidate, measured."""

    candidate: Candidate
    report: training.ModelReport
    model: loading.ServingModel = field(repr=False)  # as the serving runtime loaded it
    artifact: Path
    manifest: dict[str, Any] = field(repr=False)
    parity: dict[str, Any]
    predict_1k_seconds: float

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def files(self) -> list[Path]:
        """The files shipped in the model folder."""
        folder = self.artifact.parent
        names = [self.artifact.name, "manifest.json"]
        if self.candidate.exports_onnx:
            names.append(onnx_export.REQUIREMENTS_FILE)
        return [folder / n for n in names]

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` entry (``model_comparison`` list item)."""
        r = self.report
        return {
            "model": self.name,
            "description": self.candidate.description,
            "format": self.manifest.get("format"),
            "cv_folds": len(r.cv_scores),
            "cv_mean": r.cv_mean,
            "cv_std": r.cv_std,
            "cv_scores": r.cv_scores,
            "test_accuracy": r.test_accuracy,
            "artifact": str(self.artifact),
            "artifact_bytes": r.artifact_bytes,
            "sha256": self.manifest.get("sha256"),
            "fit_seconds": r.fit_seconds,
            "load_seconds": r.load_seconds,
            "predict_seconds_test_set": r.predict_seconds,
            "predict_seconds_1000_rows": self.predict_1k_seconds,
            "parity": self.parity,
        }


@dataclass(frozen=True)
class _Job:
    """One candidate to fit on a split and ship into a folder, with the run it belongs to."""

    candidate: Candidate
    split: Split
    model_dir: Path
    cv_scores: list[float]
    run_id: str
    data_source: str


class _Shipped(NamedTuple):
    """What an export path hands back: the report, the reloaded model and the shipped files."""

    report: training.ModelReport
    model: Any
    artifact: Path
    manifest: dict[str, Any]
    parity: dict[str, Any]


def time_predict(
    model: Any, pixels: np.ndarray, rows: int = PREDICT_ROWS, repeats: int = 3
) -> float:
    """Median seconds of ``model.predict`` on ``rows`` rows (``pixels`` repeated if fewer),
    after one warm-up call."""
    x = np.resize(np.asarray(pixels), (rows, np.asarray(pixels).shape[1]))
    model.predict(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_and_export(
    candidate: Candidate,
    split: Split,
    model_dir: str | Path,
    *,
    cv_scores: list[float],
    run_id: str,
    data_source: str,
    report_name: str | None = None,
    tolerance: float = onnx_export.PROBA_TOLERANCE,
) -> CandidateResult:
    """Fit ``candidate`` on the training split, export it into ``model_dir`` (which then holds
    exactly this one model), load it back through the serving runtime and measure it.

    ``pca_knn`` takes today's path (:func:`training.train_serving`, ``.npz``); the others go to
    ONNX with the parity proof (:func:`onnx_export.export_onnx`, raises
    :class:`onnx_export.ExportError`).
    """
    job = _Job(candidate, split, Path(model_dir), cv_scores, run_id, data_source)
    shipped = _ship_onnx(job, tolerance) if candidate.exports_onnx else _ship_npz(job)
    return CandidateResult(
        candidate=candidate,
        report=dataclasses.replace(shipped.report, name=report_name or candidate.name),
        model=shipped.model,
        artifact=shipped.artifact,
        manifest=shipped.manifest,
        parity=shipped.parity,
        predict_1k_seconds=time_predict(shipped.model, split.X_test),
    )


def _ship_npz(job: _Job) -> _Shipped:
    """PCA + k-NN to ``model.npz`` and its manifest; the labels' agreement is recorded only."""
    split = job.split
    artifact = job.model_dir / onnx_export.NPZ_MODEL_FILE
    report, loaded, agreement = training.train_serving(
        split, artifact=artifact, cv_scores=job.cv_scores, options=job.candidate.options
    )
    manifest = training.write_manifest(
        job.model_dir / "manifest.json",
        artifact,
        report,
        loaded,
        run_id=job.run_id,
        n_train=len(split.y_train),
        data_source=job.data_source,
    )
    onnx_export.remove_other_models(job.model_dir, keep=artifact.name)
    n_test = len(split.y_test)
    parity = {
        "rows_checked": n_test,
        "labels_equal": round(agreement * n_test),
        "max_probability_difference": None,
        "tolerance": None,
        "passed": None,  # not enforced: see training.train_serving
    }
    return _Shipped(report, loaded, artifact, manifest, parity)


def _ship_onnx(job: _Job, tolerance: float) -> _Shipped:
    """Fit on float32 pixels, export to ONNX with the parity proof, reload and evaluate."""
    candidate, split, cv_scores = job.candidate, job.split, job.cv_scores
    estimator = candidate.make()
    start = time.perf_counter()
    estimator.fit(split.X_train.astype(np.float32), split.y_train)
    fit_seconds = time.perf_counter() - start
    sklearn_labels = estimator.predict(split.X_test.astype(np.float32))
    exported = onnx_export.export_onnx(
        estimator,
        split.X_test,
        job.model_dir,
        name=candidate.name,
        model_type=candidate.description,
        run_id=job.run_id,
        data_source=job.data_source,
        n_train=len(split.y_train),
        metrics={
            "test_accuracy": float(accuracy_score(split.y_test, sklearn_labels)),
            "cv_mean": float(np.mean(cv_scores)) if cv_scores else float("nan"),
            "cv_std": float(np.std(cv_scores)) if cv_scores else float("nan"),
        },
        tolerance=tolerance,
    )
    report, loaded = training.reload_and_evaluate(
        candidate.name,
        exported.path,
        loading.load_model,
        split.X_test,
        split.y_test,
        cv_scores,
        fit_seconds,
    )
    return _Shipped(report, loaded, exported.path, exported.manifest, exported.parity.as_dict())
