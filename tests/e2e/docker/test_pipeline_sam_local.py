"""``mnist-lambda run -p target sam-local``: the five notebooks with the image that ships, built
by ``sam build`` and served by ``sam local start-api``, against the run's own S3."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import ROOT

from mnist_lambda import local_stack
from mnist_lambda.image import docker_engine, sam_local

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

MEMORY_MB = 1024


@pytest.fixture(scope="module")
def sam_local_run(tmp_path_factory, mnist_source) -> Path:
    out = tmp_path_factory.mktemp("sam-local") / "run-sam-local"
    params = {
        "target": "sam-local",
        "data_source": mnist_source.data_source,
        "n_samples": 3000,
        "cv_folds": 2,
        "model_dir": out.parent / "model",
        "warm_requests": 3,
        "memory_size": MEMORY_MB,
        "tune_memory": "",
    }
    args = [sys.executable, "-m", "mnist_lambda.cli", "run", "--out", str(out), "-q"]
    for key, value in params.items():
        args += ["-p", key, str(value)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_the_image_served_by_sam_agrees_with_the_notebook(sam_local_run: Path) -> None:
    metrics = json.loads((sam_local_run / "metrics.json").read_text())
    endpoint = metrics["endpoint"]
    assert endpoint["agreement"] == 1.0
    assert endpoint["rows_per_request"] == metrics["n_test"] == 600
    assert endpoint["model_sha256"] == metrics["serving"]["sha256"]
    assert endpoint["url"].startswith("http://127.0.0.1:") and endpoint["url"].endswith("/predict")
    assert endpoint["cold_start_seconds"] > 0 < endpoint["warm_latency_seconds"]["p50"]
    assert endpoint["memory_mb"] == MEMORY_MB
    state = json.loads((sam_local_run / "run_state.json").read_text())
    assert state["upload"]["target"] == state["deploy"]["target"] == "sam-local"
    assert metrics["batch"]["rows"] > 0  # predict-batch through the same API


def test_sam_built_and_served_the_run_model_with_its_memory_size(sam_local_run: Path) -> None:
    project = sam_local_run / "sam"
    built = (project / sam_local.BUILD_DIR / "template.yaml").read_text()
    assert re.search(
        r"ImageUri: predictfunction-mnist-predict-([0-9a-f]{12}):mnist-predict-\1", built
    )
    model = json.loads((sam_local_run / "run_state.json").read_text())["train"]["model_path"]
    assert (project / "lambda_app" / "model" / Path(model).name).read_bytes() == Path(
        model
    ).read_bytes()
    log = (project / sam_local.API_LOG_FILE).read_text()
    assert f"Memory Size: {MEMORY_MB} MB" in log  # SAM's REPORT line: the container's limit
    env_vars = json.loads((project / sam_local.ENV_VARS_FILE).read_text())
    endpoint = env_vars["PredictFunction"]["AWS_ENDPOINT_URL_S3"]
    assert endpoint.startswith(f"http://{docker_engine.bridge_gateway()}:")


def test_the_run_stops_sam_and_the_stack(sam_local_run: Path) -> None:
    assert sam_local.read_api(sam_local_run / "sam") is None
    assert local_stack.read(sam_local_run) is None
    left = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=sam.cli.container.type=lambda"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert left == [], "sam local start-api left containers running"
