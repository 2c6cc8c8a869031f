"""An ONNX model on the local stack: the task root gets onnxruntime for it (and only for it),
and the real handler serves it, as the image built from the same files would."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from real_stack import PREFIX, npy_bytes, predict, real_stack
from repo_paths import LAMBDA_APP

from mnist_lambda import local_stack
from mnist_lambda.local_stack.task_root import build
from mnist_lambda.modeling import model_requirements


@pytest.fixture(scope="module")
def onnx_model(logistic_onnx) -> tuple[Path, object]:
    return logistic_onnx.path, logistic_onnx.estimator


def test_the_task_root_carries_onnxruntime_only_for_an_onnx_model(onnx_model) -> None:
    requirements = LAMBDA_APP / "requirements.txt"
    plain = build(requirements).deps_dir
    with_onnx = build(
        requirements, model_requirements=onnx_model[0].with_name(model_requirements.FILE_NAME)
    ).deps_dir
    assert plain is not None and with_onnx is not None and plain != with_onnx
    assert not (plain / "onnxruntime").exists()
    assert (with_onnx / "onnxruntime").is_dir() and (with_onnx / "numpy").is_dir()


@pytest.mark.parametrize("snapstart", ["None", "PublishedVersions"])
def test_the_handler_serves_an_onnx_model(tmp_path: Path, onnx_model, mnist_xy, snapstart) -> None:
    path, est = onnx_model
    rows = mnist_xy[0][2000:2300]
    extra = ["-P", f"SnapStart={snapstart}"]
    with real_stack(tmp_path / "stack", path, extra_args=extra) as info:
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key=f"{PREFIX}rows.npy", Body=npy_bytes(rows)
        )
        first, second = (predict(info, f"{PREFIX}rows.npy") for _ in range(2))
    expected = est.predict(rows.astype(np.float32)).tolist()
    assert first.status_code == 200 and first.json() == expected
    assert second.json() == expected
    assert first.headers["X-Model-Sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
