"""Serving model candidates: built-in and user ones construct, run through the same export and
parity path, and compare (table, verdict, figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import user_candidates

from mnist_lambda.modeling import candidates, comparison, figures, fit_export, onnx_export
from mnist_lambda.modeling.options import ModelOptions
from mnist_serving import loading


@pytest.fixture(scope="module")
def split(mnist_xy):
    from mnist_lambda.modeling.sampling import sample_and_split

    x, y = mnist_xy
    return sample_and_split(x[:3000], y[:3000], n_samples=1500, random_state=0)


@pytest.mark.parametrize("name", list(candidates.BUILTIN))
def test_every_builtin_candidate_constructs_seeded(name: str) -> None:
    candidate = candidates.get_candidate(name, ModelOptions(random_state=7))
    estimator = candidate.make()
    assert all(callable(getattr(estimator, m)) for m in ("fit", "predict", "predict_proba"))
    assert not hasattr(estimator, "classes_")  # unfitted
    seeds = {k: v for k, v in estimator.get_params().items() if k.endswith("random_state")}
    assert seeds and set(seeds.values()) == {7}, seeds
    assert candidate.exports_onnx == (name != "pca_knn")
    assert candidate.artifact_name == ("model.npz" if name == "pca_knn" else "model.onnx")


def test_pca_knn_is_todays_serving_model() -> None:
    pipe = candidates.get_candidate(
        "pca_knn", ModelOptions(n_neighbors=3, pca_components=20)
    ).make()
    assert pipe.named_steps["pca"].n_components == 20
    assert pipe.named_steps["knn"].n_neighbors == 3
    assert pipe.named_steps["knn"].weights == "distance"


def test_model_lists_parse() -> None:
    assert candidates.parse_names(candidates.DEFAULT_COMPARE) == ["pca_knn", "logistic"]
    assert candidates.parse_names(" mlp, ,logistic,mlp ,") == ["mlp", "logistic"]
    assert candidates.parse_names("") == []


def test_a_user_function_is_imported_called_with_the_seed_and_checked() -> None:
    user_candidates.SEEDS.clear()
    candidate = candidates.get_candidate(
        "user_candidates:scaled_logistic", ModelOptions(random_state=5)
    )
    assert candidate.exports_onnx and candidate.slug == "user_candidates_scaled_logistic"
    assert "MinMaxScaler -> LogisticRegression" in candidate.description
    assert candidate.make().named_steps["logistic"].random_state == 5
    assert set(user_candidates.SEEDS) == {5}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("random_forest", "unknown model 'random_forest': choose one of pca_knn, logistic"),
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
        ("user_candidates:missing", "has no attribute 'missing'"),
        ("user_candidates:NOT_CALLABLE", "is a int, not a function"),
        ("user_candidates:no_proba", "gave NoProba, which has no predict_proba"),
        ("user_candidates:broken", r"calling user_candidates:broken\(\) raised RuntimeError"),
        ("user_candidates:", "unknown model"),
    ],
)
def test_bad_names_are_refused_clearly(name: str, message: str) -> None:
    with pytest.raises(candidates.CandidateError, match=message):
        candidates.get_candidate(name, ModelOptions())


@pytest.fixture(scope="module")
def results(split, tmp_path_factory) -> dict[str, fit_export.CandidateResult]:
    root = tmp_path_factory.mktemp("candidates")
    out = {}
    for name in ("pca_knn", "logistic", "user_candidates:scaled_logistic"):
        candidate = candidates.get_candidate(name, ModelOptions(pca_components=30))
        out[name] = fit_export.fit_and_export(
            candidate,
            split,
            root / candidate.slug,
            cv_scores=[0.9, 0.92],
            run_id="run-c",
            data_source="test",
        )
    return out


def test_a_user_candidate_takes_the_same_export_and_parity_path(results, split) -> None:
    result = results["user_candidates:scaled_logistic"]
    assert result.artifact.name == "model.onnx"
    assert result.parity["passed"] and result.parity["rows_checked"] == len(split.y_test)
    assert result.manifest["model"]["name"] == "user_candidates:scaled_logistic"
    assert "MinMaxScaler -> LogisticRegression" in result.manifest["model"]["estimator"]
    loaded = loading.load_model(loading.default_model_path(result.artifact.parent))
    np.testing.assert_array_equal(loaded.predict(split.X_test), result.report.predictions)
    assert result.report.test_accuracy > 0.8


def test_the_comparison_table_verdict_and_figure(results, tmp_path: Path) -> None:
    rows = comparison.rows(results.values())
    assert [r["model"] for r in rows] == list(results)
    knn, logistic = rows[0], rows[1]
    assert (knn["format"], logistic["format"]) == ("npz", "onnx")
    assert logistic["cv folds"] == 2 and logistic["cv accuracy"] == 0.91
    assert logistic["artifact bytes"] == results["logistic"].artifact.stat().st_size
    assert logistic["parity"].startswith("ok: 300/300 labels")
    assert knn["parity"].endswith("labels (numpy k-NN, not enforced)")
    assert 0 < logistic["predict s (1,000 rows)"] < 5
    metrics = results["logistic"].metrics()
    assert (
        metrics["parity"]["passed"] and metrics["sha256"] == results["logistic"].manifest["sha256"]
    )
    accuracy = results["logistic"].report.test_accuracy
    assert "WARNING" in comparison.verdict(results.values(), "logistic", accuracy + 0.01)
    verdict = comparison.verdict(results.values(), "logistic", accuracy)
    assert "WARNING" not in verdict and "at least as accurate as the baseline" in verdict
    fig = comparison.figure(results.values(), accuracy, serving="logistic")
    path = figures.save_figure(fig, tmp_path, "model_comparison")
    assert path.stat().st_size > 5000
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("pca_knn, ") for t in texts) and any(
        t.startswith("logistic (serving), ") for t in texts
    )


def test_a_refused_candidate_names_the_step_and_leaves_no_model(split, tmp_path: Path) -> None:
    candidate = candidates.get_candidate("user_candidates:majority", ModelOptions())
    with pytest.raises(onnx_export.ExportError, match="at step 'conversion'") as info:
        fit_export.fit_and_export(
            candidate, split, tmp_path, cv_scores=[], run_id="r", data_source="test"
        )
    assert "'user_candidates:majority' (MajorityClassifier)" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_notebook_02_defaults_are_the_modules() -> None:
    import papermill as pm
    from repo_paths import ROOT

    params = pm.inspect_notebook(str(ROOT / "notebooks" / "02_train_model.ipynb"))
    assert params["serving_model"]["default"] == f'"{candidates.DEFAULT_SERVING_MODEL}"'
    assert params["compare_models"]["default"] == f'"{candidates.DEFAULT_COMPARE}"'
