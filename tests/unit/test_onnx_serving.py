"""Serving an ONNX model: the operator-domain check, the thread count, the loader's dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mnist_serving import loading
from mnist_serving.onnx_model import OnnxModel, cpu_threads, operator_domains


@pytest.fixture(scope="module")
def exported(logistic_onnx, mnist_xy) -> tuple[Path, object, np.ndarray]:
    """The shared ONNX test model, and digits it was not fitted on."""
    return logistic_onnx.path, logistic_onnx.estimator, mnist_xy[0][1500:2000]


def test_the_loader_serves_what_the_manifest_names(exported) -> None:
    path, est, rows = exported
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


def test_an_onnx_model_without_its_classes_is_refused(exported, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(exported[0].read_bytes())
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


def test_operator_domains_are_read_from_the_file(exported) -> None:
    path = exported[0]
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
