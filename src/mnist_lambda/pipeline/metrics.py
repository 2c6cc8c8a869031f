"""``metrics.json``: what a run measured, for people and reports, in typed sections.

Each step writes its sections with :func:`write` and :mod:`mnist_lambda.pipeline.report` reads
them with :func:`read`. :data:`KEYS` is the file's layout: a section's fields stand at the top
level (None) or under its key. What the notebooks show of a section (a table, a sentence) is
made here too (:func:`parity_line`, :func:`models_table`, :func:`most_confused_table`,
:meth:`EndpointMetrics.latency_table`, :meth:`EndpointMetrics.cost_line`), so that the
notebooks tell the story and hold no plumbing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from mnist_lambda import pricing
from mnist_lambda.client import Result, latency_summary
from mnist_lambda.deploy.targets import Deployment
from mnist_lambda.pipeline import sections
from mnist_lambda.pipeline.state import SampleState, UploadState

if TYPE_CHECKING:
    from mnist_lambda.batch.run import BatchResult
    from mnist_lambda.modeling.fit_export import CandidateResult
    from mnist_lambda.modeling.options import ModelOptions
    from mnist_lambda.modeling.training import ModelReport

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class RunMetrics:
    """The run's id (the run folder's name), written first."""

    run_id: str


@dataclass(frozen=True)
class DataMetrics:
    """``sample``: the data and the split."""

    data_source: str
    data_source_used: str
    data_fell_back: bool
    n_available: int
    n_train: int
    n_test: int
    random_state: int
    stratify: bool

    @classmethod
    def of(
        cls, sample: SampleState, *, n_available: int, random_state: int, stratify: bool
    ) -> DataMetrics:
        """The section for what ``sample`` handed on, with the sample's settings."""
        return cls(
            data_source=sample.data_source,
            data_source_used=sample.data_source_used,
            data_fell_back=sample.fell_back,
            n_available=n_available,
            n_train=sample.n_train,
            n_test=sample.n_test,
            random_state=random_state,
            stratify=stratify,
        )


@dataclass(frozen=True)
class ModelMetrics:
    """One model on the test set (``baseline``), as :class:`ModelReport` measured it."""

    cv_mean: float
    cv_std: float
    cv_scores: list[float]
    test_accuracy: float
    confusion_matrix: list[list[int]]
    fit_seconds: float
    predict_seconds: float
    artifact_bytes: int
    load_seconds: float
    artifact: str
    most_confused: list[list[int]]
    """(true, predicted, count) rows, most frequent first."""

    @classmethod
    def of(cls, report: ModelReport, most_confused: Iterable[Sequence[int]]) -> ModelMetrics:
        """The entry for ``report`` and its most confused (true, predicted, count) pairs."""
        return cls(**report.metrics(), most_confused=[list(row) for row in most_confused])


@dataclass(frozen=True)
class ServingMetrics(ModelMetrics):
    """The serving model: as a model, and as the artifact that ships."""

    model: str
    format: str
    sklearn_agreement: float
    """Share of test rows where the exported model's labels equal scikit-learn's."""
    parity: dict[str, Any]
    sha256: str
    n_components: int | None = None
    """PCA components of ``pca_knn``; None for an ONNX model."""

    @classmethod
    def of_result(
        cls,
        result: CandidateResult,
        most_confused: Iterable[Sequence[int]],
        n_components: int | None,
    ) -> ServingMetrics:
        """The entry for the exported, reloaded serving model (``n_components``: pca_knn's)."""
        parity = result.parity
        return cls(
            **result.report.metrics(),
            most_confused=[list(row) for row in most_confused],
            model=result.name,
            format=result.manifest["format"],
            sklearn_agreement=parity["labels_equal"] / parity["rows_checked"],
            parity=parity,
            sha256=result.manifest["sha256"],
            n_components=n_components,
        )


def parity_line(result: CandidateResult) -> str:
    """The exported serving model against scikit-learn on the test split, in one sentence."""
    parity = result.parity
    rows = parity["rows_checked"]
    if result.candidate.exports_onnx:
        return (
            f"parity: onnxruntime's labels equal scikit-learn's on all {rows:,} test rows; "
            f"probabilities within {parity['tolerance']:g} "
            f"(max difference {parity['max_probability_difference']:.1e})"
        )
    return (
        f"parity: the exported numpy model agrees with the scikit-learn pipeline on "
        f"{parity['labels_equal'] / rows:.2%} of {rows:,} test rows "
        "(float32 near-ties may rarely differ)"
    )


RATIO_COLUMNS = {
    "predict s (test set)": "predict_seconds",
    "artifact MB": "artifact_bytes",
    "load s": "load_seconds",
}
"""The columns of :func:`models_table` whose baseline / serving ratio it shows."""


def models_table(baseline: ModelReport, serving: ModelReport) -> pd.DataFrame:
    """Both models side by side (:func:`training.comparison_table`'s columns), and a last row
    with how many times the serving model is faster to predict, smaller and faster to load."""
    from mnist_lambda.modeling.training import comparison_table

    table = pd.DataFrame(comparison_table([baseline, serving])).set_index("model").astype(object)
    table.loc["baseline / serving"] = {
        column: f"{getattr(baseline, field) / getattr(serving, field):.1f}x"
        for column, field in RATIO_COLUMNS.items()
    }
    return table.fillna("")


def most_confused_table(pairs: Mapping[str, Iterable[Sequence[int]]]) -> pd.DataFrame:
    """The most confused (true, predicted, count) pairs of each model (``pairs`` by name)."""
    rows = [
        {"model": name, "true": t, "predicted": p, "count": c}
        for name, found in pairs.items()
        for t, p, c in found
    ]
    columns = ["model", "true", "predicted", "count"]
    return pd.DataFrame(rows, columns=columns).set_index(columns[:3])


@dataclass(frozen=True)
class TrainingMetrics:
    """``train``: both models, the candidates compared, and the settings they were made with."""

    baseline: ModelMetrics
    serving: ServingMetrics
    serving_model: str
    model_comparison: list[dict[str, Any]]
    """A candidate's measurements, or ``{"model", "refused"}`` when it could not export."""
    comparison_cv_folds: int
    n_neighbors: int
    cv_folds: int
    model_dir: str

    @classmethod
    def of(
        cls,
        baseline: ModelReport,
        serving: CandidateResult,
        *,
        most_confused: Mapping[str, Iterable[Sequence[int]]],
        compared: Iterable[CandidateResult],
        refused: Mapping[str, str],
        options: ModelOptions,
        cv_folds: int,
        comparison_cv_folds: int,
        model_dir: str | Path,
    ) -> TrainingMetrics:
        """The section from notebook 02's results (``most_confused`` by model name)."""
        pca = None if serving.candidate.exports_onnx else options.pca_components
        return cls(
            baseline=ModelMetrics.of(baseline, most_confused["baseline"]),
            serving=ServingMetrics.of_result(serving, most_confused["serving"], pca),
            serving_model=serving.name,
            model_comparison=[r.metrics() for r in compared]
            + [{"model": name, "refused": reason} for name, reason in refused.items()],
            comparison_cv_folds=comparison_cv_folds,
            n_neighbors=options.n_neighbors,
            cv_folds=cv_folds,
            model_dir=str(model_dir),
        )


@dataclass(frozen=True)
class EndpointMetrics:
    """``evaluate``: the endpoint's answers against the notebook's, its latency and cost."""

    url: str
    agreement: float
    accuracy: float
    rows_per_request: int
    cold_start_seconds: float
    cold_start_init_ms: float | None
    warm_latency_seconds: dict[str, float]
    """p50, p95, mean, min, max and n of the warm calls (:func:`client.latency_summary`)."""
    function_seconds_p50: float
    """The function's own warm duration where the endpoint reports it, else the call's."""
    memory_mb: int
    estimated_usd_per_million_predictions: float
    estimated_usd_breakdown: dict[str, float]
    model_sha256: str | None

    @classmethod
    def measure(
        cls,
        url: str,
        cold: Result,
        warm: Sequence[Result],
        *,
        agreement: float,
        accuracy: float,
        memory_mb: int,
    ) -> EndpointMetrics:
        """The section from the first (cold) call and the warm ones, at ``memory_mb``."""
        latency = latency_summary([c.seconds for c in warm])
        function_ms = [c.function_ms for c in warm if c.function_ms is not None]
        seconds = float(np.median(function_ms)) / 1000 if function_ms else latency["p50"]
        rows = len(cold.labels)
        cost = pricing.usd_per_million_predictions(seconds, memory_mb, rows_per_request=rows)
        return cls(
            url=url,
            agreement=agreement,
            accuracy=accuracy,
            rows_per_request=rows,
            cold_start_seconds=cold.seconds,
            cold_start_init_ms=cold.init_ms,
            warm_latency_seconds=latency,
            function_seconds_p50=seconds,
            memory_mb=memory_mb,
            estimated_usd_per_million_predictions=cost["total"],
            estimated_usd_breakdown=cost,
            model_sha256=cold.model_sha256,
        )

    def latency_table(self) -> pd.DataFrame:
        """The cold call and the warm calls' latency summary, in seconds, as one row."""
        warm = {f"warm {k} s": v for k, v in self.warm_latency_seconds.items() if k != "n"}
        return pd.DataFrame([{"cold s": self.cold_start_seconds, **warm}]).round(4)

    def cost_line(self) -> str:
        """What a million predictions cost at this memory size, in one sentence."""
        cost = self.estimated_usd_breakdown
        return (
            f"{self.memory_mb} MB, {self.function_seconds_p50 * 1000:.0f} ms per request of "
            f"{self.rows_per_request:,} rows: ${cost['lambda']:.4f} Lambda + "
            f"${cost['api_gateway']:.4f} API Gateway = ${cost['total']:.4f} per million "
            "predictions"
        )


@dataclass(frozen=True)
class BatchMetrics:
    """``evaluate``: the batch client (``predict-batch``) through the same endpoint."""

    rows: int
    chunks: int
    seconds: float
    rows_per_second: float
    retries: int

    @classmethod
    def of(cls, result: BatchResult) -> BatchMetrics:
        """The section for what :func:`mnist_lambda.batch.run_batch` returned."""
        return cls(
            result.rows, result.chunks, result.seconds, result.rows_per_second, result.retries
        )


@dataclass(frozen=True)
class TuneMetrics:
    """``evaluate``: the MemorySize sweep's recommendation and its table."""

    recommendation: dict[str, Any] | None
    results: list[dict[str, Any]]
    """:func:`mnist_lambda.tuning.report.table`'s rows."""
    tune_json: str

    @classmethod
    def of(cls, doc: Mapping[str, Any], table: list[dict[str, Any]]) -> TuneMetrics:
        """From what :func:`mnist_lambda.tuning.tune.tune` returned and its table."""
        return cls(doc["recommendation"], table, doc["paths"]["tune_json"])


@dataclass(frozen=True)
class TrafficMetrics:
    """``evaluate``: the traffic what-if (:func:`mnist_lambda.tuning.traffic.run.what_if`'s)."""

    traffic: dict[str, Any]


Section = TypeVar(
    "Section",
    RunMetrics,
    DataMetrics,
    TrainingMetrics,
    UploadState,
    Deployment,
    EndpointMetrics,
    BatchMetrics,
    TuneMetrics,
    TrafficMetrics,
)

KEYS: dict[type, str | None] = {
    RunMetrics: None,
    DataMetrics: None,
    TrainingMetrics: None,
    UploadState: "upload",
    Deployment: "deploy",
    EndpointMetrics: "endpoint",
    BatchMetrics: "batch",
    TuneMetrics: "tune",
    TrafficMetrics: None,
}


def write(run_dir: str | Path, section: Section) -> None:
    """Merge ``section`` into ``run_dir/metrics.json`` (written atomically).

    Returns None on purpose, so that a notebook cell ending with it displays nothing.
    """
    sections.write(Path(run_dir) / METRICS_FILE, KEYS[type(section)], section)


def read(run_dir: str | Path, kind: type[Section]) -> Section | None:
    """The ``kind`` section of ``run_dir/metrics.json``; None when no step wrote it."""
    return sections.read(Path(run_dir) / METRICS_FILE, KEYS[kind], kind)
