"""Serving an ONNX model: the operator-domain check, the thread count, the loader's dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_serving import loading, model_info
from mnist_serving.onnx_model import OnnxModel, cpu_threads, operator_domains


@pytest.fixture(scope="module")
def logistic_onnx(tmp_path_factory, mnist_xy) -> tuple[Path, object, np.ndarray]:
    """A small logistic regression exported as the training step does: model.onnx + manifest."""
    x, y = mnist_xy
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=100))
    est.fit(x[:1500].astype(np.float32), y[:1500])
    folder = tmp_path_factory.mktemp("onnx")
    onx = to_onnx(est, x[:1].astype(np.float32), options={"zipmap": False})
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    manifest = {"model_file": "model.onnx", "model": {"classes": est.classes_.tolist()}}
    (folder / model_info.MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder / "model.onnx", est, x[1500:2000]


def test_the_loader_serves_what_the_manifest_names(logistic_onnx) -> None:
    path, est, rows = logistic_onnx
    assert loading.default_model_path(path.parent) == path
    served = loading.load_model(path)
    assert isinstance(served, OnnxModel)
    assert np.array_equal(served.predict(rows), est.predict(rows.astype(np.float32)))
    proba = served.predict_proba(rows)
    assert proba.shape == (len(rows), 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.abs(proba - est.predict_proba(rows.astype(np.float32))).max() < 1e-4
    assert served.classes.tolist() == list(range(10))


def test_without_a_manifest_the_model_is_model_npz(tmp_path: Path) -> None:
    assert loading.default_model_path(tmp_path) == tmp_path / "model.npz"


def test_an_onnx_model_without_its_classes_is_refused(logistic_onnx, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(logistic_onnx[0].read_bytes())
    with pytest.raises(ValueError, match=r"manifest\.json with its classes"):
        loading.load_model(path)


def _model_with_domain(domain: str) -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_operator_domains_are_read_from_the_file(logistic_onnx) -> None:
    path = logistic_onnx[0]
    expected = {o.domain for o in onnx.load(path).opset_import}
    assert operator_domains(path.read_bytes()) == expected
    assert operator_domains(_model_with_domain("com.microsoft")) == {"", "com.microsoft"}


@pytest.mark.parametrize("domain", ["com.microsoft", "my.custom.ops"])
def test_a_non_standard_operator_domain_is_refused(tmp_path: Path, domain: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(_model_with_domain(domain))
    with pytest.raises(ValueError, match="non-standard ONNX operator domains"):
        OnnxModel(path, list(range(10)))


def test_not_an_onnx_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        operator_domains(b"\x93NUMPY\x01\x00 this is not protobuf \xff\xff\xff")


@pytest.mark.parametrize(
    ("memory_mb", "cores", "threads"),
    [(128, 2, 1), (1769, 2, 1), (1770, 2, 2), (3538, 2, 2), (10240, 2, 2), (10240, 8, 6)],
)
def test_threads_follow_the_cpu_share(monkeypatch, memory_mb, cores, threads) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert cpu_threads({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}) == threads
