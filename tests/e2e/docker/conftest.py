"""Fixtures of the Docker layer: the base image, SAM projects built with ``sam build`` for both
model formats, and an S3 (moto, IAM enforced) at the Docker bridge's gateway that the function
in its container reaches with the template policy's credentials.

Every test here is marked ``docker``: where no engine answers, the root conftest skips them
with one reason, and the run's summary counts them.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from repo_paths import TEMPLATE

from mnist_lambda.image import base, docker_engine, sam_local
from mnist_lambda.local_stack.s3_server import S3Server
from mnist_lambda.template import FUNCTION_ID
from mnist_lambda.template.reader import load_stack_spec
from mnist_serving.loading import load_model

BUCKET, PREFIX = "mnist-data", "inputs/"  # what events/*.json ask for
MAX_OBJECT_BYTES = 1_000_000  # events/too_large.json's object is over it
ROWS = 200  # 157 KB as .npy, 361 KB as CSV: under MAX_OBJECT_BYTES
PARAMETERS = {
    "DataBucketName": BUCKET,
    "DataKeyPrefix": PREFIX,
    "MaxObjectBytes": MAX_OBJECT_BYTES,
}


@pytest.fixture(scope="session")
def base_image() -> base.BaseImage:
    return base.ensure_base()


@dataclass(frozen=True)
class DockerS3:
    """The S3 a function in a container reads, and the function principal's keys."""

    server: S3Server
    url: str
    function_credentials: dict[str, str]
    pixels: np.ndarray  # what inputs/digits.{npy,npz,csv,csv.gz} hold

    def client(self) -> Any:
        return self.server.admin_client()


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _objects(pixels: np.ndarray) -> dict[str, bytes]:
    """The objects the events name (keys under inputs/, and one outside the prefix)."""
    npz = io.BytesIO()
    np.savez_compressed(npz, X=pixels)
    csv = ("\n".join(",".join(map(str, row)) for row in pixels.tolist()) + "\n").encode()
    objects = np.empty((1, 784), dtype=object)
    objects[:] = 0
    too_large = np.zeros((MAX_OBJECT_BYTES // 784 + 50, 784), dtype=np.uint8)
    return {
        "inputs/digits.npy": _npy(pixels),
        "inputs/digits.npz": npz.getvalue(),
        "inputs/digits.csv": csv,
        "inputs/digits.csv.gz": gzip.compress(csv),
        "inputs/wrong-shape.npy": _npy(np.zeros((3, 100), dtype=np.uint8)),
        "inputs/too-large.npy": _npy(too_large),
        "inputs/object-array.npy": _npy(objects, allow_pickle=True),
        "inputs/digits.pkl": b"\x80\x04 never read",
        "inputs/digits.joblib": b"\x80\x04 never read",
        "private/digits.npy": _npy(pixels),
    }


@pytest.fixture(scope="session")
def docker_s3(base_image, unseen_pixels) -> Iterator[DockerS3]:
    """moto at the bridge's gateway, IAM enforced with the template's function policy."""
    spec = load_stack_spec(TEMPLATE, {k: str(v) for k, v in PARAMETERS.items()})
    server = S3Server(
        policies=spec.functions[FUNCTION_ID].policies, host=docker_engine.bridge_gateway()
    )
    url = server.start()
    try:
        server.create_bucket(BUCKET)
        pixels = np.asarray(unseen_pixels[:ROWS], dtype=np.uint8)
        client = server.admin_client()
        for key, data in _objects(pixels).items():
            client.put_object(Bucket=BUCKET, Key=key, Body=data)
        assert server.credentials is not None
        yield DockerS3(server, url, server.credentials.function.as_kwargs(), pixels)
    finally:
        server.stop()


@dataclass(frozen=True)
class SamProject:
    """A SAM project built with ``sam build`` for one model, and that model in-process."""

    kind: str  # "npz" or "onnx"
    path: Path
    model_path: Path
    env_vars: Path
    image: str  # the tag sam build gave the function's image

    def expected(self, pixels: np.ndarray) -> np.ndarray:
        return load_model(self.model_path).predict(pixels)

    def expected_proba(self, pixels: np.ndarray) -> np.ndarray:
        return load_model(self.model_path).predict_proba(pixels)


@pytest.fixture(scope="session", params=["npz", "onnx"])
def sam_project(
    request, tmp_path_factory, docker_s3, small_model_path, logistic_onnx
) -> SamProject:
    """``sam build`` of the project's template with the small ``.npz`` model or the ONNX one."""
    model_path = small_model_path if request.param == "npz" else logistic_onnx.path
    project = sam_local.stage_project(tmp_path_factory.mktemp(f"sam-{request.param}"), model_path)
    sam_local.sam_build(project)
    image = sam_local.built_image(project)
    env_vars = sam_local.write_env_vars(project, docker_s3.url)
    return SamProject(request.param, project, model_path, env_vars, image)
