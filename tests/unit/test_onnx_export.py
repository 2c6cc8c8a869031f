"""ONNX export: nothing ships before onnxruntime (the serving runtime) and scikit-learn agree on
every test row; the manifest and requirements describe what shipped; one model per folder."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
import user_candidates

from mnist_lambda.modeling import candidates, fit_export, model_requirements, onnx_export
from mnist_lambda.modeling.options import ModelOptions
from mnist_serving import loading
from mnist_serving.model import file_sha256
from mnist_serving.onnx_model import STANDARD_DOMAINS, operator_domains

MANIFEST_KEYS = {
    "model_file",
    "format",
    "format_description",
    "sha256",
    "bytes",
    "version",
    "run_id",
    "model",
    "input_schema",
    "metrics",
    "data_source",
    "library_versions",
    "opset",
    "runtime_requirements",
    "parity",
}


@pytest.fixture(scope="module")
def split(mnist_xy):
    from mnist_lambda.modeling.sampling import sample_and_split

    x, y = mnist_xy
    return sample_and_split(x[:3000], y[:3000], n_samples=1500, random_state=0)


@pytest.fixture(scope="module")
def fitted(split) -> dict[str, object]:
    x = split.X_train.astype(np.float32)
    return {
        name: candidates.get_candidate(name, ModelOptions(random_state=0))
        .make()
        .fit(x, split.y_train)
        for name in ("logistic", "mlp")
    }


def export(estimator, split, folder: Path, name: str = "logistic", **kwargs):
    return onnx_export.export_onnx(
        estimator,
        split.X_test,
        folder,
        name=name,
        run_id="run-x",
        data_source="sample:test",
        n_train=len(split.y_train),
        metrics={"test_accuracy": 0.9},
        **kwargs,
    )


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("name", ["logistic", "mlp"])
def test_parity_passes_and_the_manifest_describes_the_model(
    name: str, fitted, split, tmp_path: Path
) -> None:
    estimator = fitted[name]
    result = export(estimator, split, tmp_path, name=name)
    assert folder_names(tmp_path) == ["manifest.json", "model-requirements.txt", "model.onnx"]
    assert result.parity.passed and result.parity.rows_checked == len(split.y_test) == 300
    assert result.parity.labels_equal == 300
    assert result.parity.max_probability_difference <= onnx_export.PROBA_TOLERANCE == 1e-4
    np.testing.assert_array_equal(result.labels, estimator.predict(split.X_test.astype("f4")))

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["model_file"] == "model.onnx" and manifest["format"] == "onnx"
    assert manifest["sha256"] == file_sha256(tmp_path / "model.onnx")
    assert manifest["bytes"] == (tmp_path / "model.onnx").stat().st_size
    assert manifest["version"] == manifest["run_id"] == "run-x"
    assert manifest["model"]["name"] == name and manifest["model"]["type"]
    assert manifest["model"]["classes"] == list(range(10))
    schema = manifest["input_schema"]
    assert schema["shape"] == ["n", 784] and schema["dtype"] == "uint8"
    assert schema["onnx_input_name"] == "X" and schema["onnx_dtype"] == "float32"
    assert manifest["parity"] == {
        "rows_checked": 300,
        "labels_equal": 300,
        "max_probability_difference": result.parity.max_probability_difference,
        "tolerance": 1e-4,
        "passed": True,
    }
    assert manifest["metrics"] == {"test_accuracy": 0.9}
    assert manifest["data_source"] == "sample:test"
    for lib in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"):
        assert manifest["library_versions"][lib] == metadata.version(lib)
    proto = onnx.load(tmp_path / "model.onnx")
    assert manifest["opset"] == onnx_export.opset(proto)
    assert set(manifest["opset"]) <= {"ai.onnx", "ai.onnx.ml"}
    assert [o.name for o in proto.graph.output][:2] == ["label", "probabilities"]
    # only standard operator domains, as the serving runtime reads them
    assert operator_domains((tmp_path / "model.onnx").read_bytes()) <= STANDARD_DOMAINS
    assert {node.domain for node in proto.graph.node} <= STANDARD_DOMAINS


def test_requirements_pin_the_installed_runtime(fitted, split, tmp_path: Path) -> None:
    result = export(fitted["logistic"], split, tmp_path)
    text = (tmp_path / "model-requirements.txt").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("#")
    pins = [line for line in lines if line and not line.startswith("#")]
    expected = [
        f"{name}=={metadata.version(name)}"
        for name in ("onnxruntime", "flatbuffers", "packaging", "protobuf")
    ]
    assert pins == expected == result.manifest["runtime_requirements"]
    assert text == model_requirements.onnx_requirements()
    assert result.requirements_path == tmp_path / "model-requirements.txt"


def previous_model(folder: Path, small_model_path: Path) -> dict[str, bytes]:
    """A shipped .npz model and its manifest in ``folder``; returns the folder's bytes."""
    folder.mkdir(exist_ok=True)
    shutil.copy(small_model_path, folder / "model.npz")
    manifest = {"model_file": "model.npz", "sha256": file_sha256(folder / "model.npz")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_label_mismatch_raises_with_the_rows_and_ships_nothing(
    fitted, split, tmp_path: Path, small_model_path: Path, monkeypatch
) -> None:
    estimator = fitted["logistic"]
    before = previous_model(tmp_path, small_model_path)
    true_predict = estimator.predict
    flipped = [3, 50, 51, 299]

    def wrong_predict(x):
        labels = true_predict(x).copy()
        labels[flipped] = (labels[flipped] + 1) % 10
        return labels

    monkeypatch.setattr(estimator, "predict", wrong_predict)
    with pytest.raises(onnx_export.ParityError, match="at step 'parity'") as info:
        export(estimator, split, tmp_path)
    message = str(info.value)
    assert "labels differ from scikit-learn's predict on 4 of 300 rows" in message
    onnx_labels = true_predict(split.X_test.astype(np.float32))
    for row in flipped:
        assert f"row {row}: sklearn {(onnx_labels[row] + 1) % 10} vs onnx {onnx_labels[row]}" in (
            message
        )
    assert info.value.rows.tolist() == flipped and info.value.step == "parity"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched


def test_a_probability_mismatch_raises_and_lists_at_most_20_rows(
    fitted, split, tmp_path: Path, monkeypatch
) -> None:
    estimator = fitted["logistic"]
    true_proba = estimator.predict_proba
    monkeypatch.setattr(estimator, "predict_proba", lambda x: true_proba(x) + 1e-3)
    with pytest.raises(onnx_export.ParityError) as info:
        export(estimator, split, tmp_path)
    message = str(info.value)
    assert "probabilities differ from predict_proba by more than 0.0001 on 300 rows" in message
    assert "first 20: row 0:" in message and "row 19:" in message and "row 20:" not in message
    assert list(tmp_path.iterdir()) == []


def test_an_unconvertible_estimator_is_refused_at_conversion(split, tmp_path: Path) -> None:
    estimator = user_candidates.majority().fit(split.X_train, split.y_train)
    with pytest.raises(onnx_export.ExportError) as info:
        export(estimator, split, tmp_path, name="majority")
    assert info.value.step == "conversion"
    assert "ONNX export of 'majority' (MajorityClassifier) refused at step 'conversion'" in str(
        info.value
    )
    assert "MissingShapeCalculator" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_non_standard_operator_domain_is_refused(
    fitted, split, tmp_path: Path, monkeypatch
) -> None:
    real_convert = onnx_export.convert

    def with_contrib_ops(estimator, sample):
        proto = real_convert(estimator, sample)
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
        return proto

    monkeypatch.setattr(onnx_export, "convert", with_contrib_ops)
    with pytest.raises(onnx_export.ExportError, match=r"'operator domains'.*com\.microsoft"):
        export(fitted["logistic"], split, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_session_failure_is_named(fitted, split, tmp_path: Path, monkeypatch) -> None:
    def no_session(path):
        raise RuntimeError("cannot create a session")

    monkeypatch.setattr(onnx_export.loading, "load_model", no_session)
    with pytest.raises(onnx_export.ExportError, match="'session creation': RuntimeError"):
        export(fitted["logistic"], split, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_switching_formats_leaves_exactly_one_model(split, tmp_path: Path) -> None:
    model_dir, run_copy = tmp_path / "model", tmp_path / "run-model"
    for name in ("pca_knn", "logistic", "pca_knn", "logistic"):
        candidate = candidates.get_candidate(name, ModelOptions(pca_components=20))
        result = fit_export.fit_and_export(
            candidate, split, model_dir, cv_scores=[], run_id="r", data_source="test"
        )
        expected = sorted(p.name for p in result.files)
        assert folder_names(model_dir) == expected
        if name == "pca_knn":
            assert expected == ["manifest.json", "model.npz"]
        else:
            assert expected == ["manifest.json", "model-requirements.txt", "model.onnx"]
        path = loading.default_model_path(model_dir)
        assert path == model_dir / candidate.artifact_name == result.artifact
        manifest = json.loads((model_dir / "manifest.json").read_text())
        assert manifest["sha256"] == file_sha256(path)
        np.testing.assert_array_equal(
            loading.load_model(path).predict(split.X_test), result.report.predictions
        )
        copies = onnx_export.copy_model_files(model_dir, run_copy)
        assert sorted(p.name for p in copies) == folder_names(run_copy) == expected


def test_the_npz_manifest_keeps_its_fields(split, tmp_path: Path) -> None:
    result = fit_export.fit_and_export(
        candidates.get_candidate("pca_knn", ModelOptions(pca_components=20)),
        split,
        tmp_path,
        cv_scores=[],
        run_id="r",
        data_source="test",
    )
    assert list(result.manifest) == [
        "model_file",
        "format",
        "format_description",
        "sha256",
        "bytes",
        "version",
        "run_id",
        "model",
        "input_schema",
        "metrics",
        "data_source",
        "library_versions",
    ]
    assert result.manifest["format"] == "mnist-lambda/pca-knn-npz/1"
    assert set(result.manifest["model"]) == {
        "type",
        "n_components",
        "n_neighbors",
        "n_train",
        "classes",
    }
