"""The tutorial's own test commands, for real: ``sam local invoke`` with every file in
``events/`` and ``sam local start-api`` answering ``POST /predict``, on the image ``sam build``
built, for both model formats. The function runs in a container and reads an S3 (moto, IAM
enforced) at the Docker bridge's gateway with the template policy's credentials."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import BUCKET, PARAMETERS
from repo_paths import EVENTS_DIR

from mnist_lambda.image import sam_local

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

# What each example event gets from the function, given the objects docker_s3 holds: a status
# and an error code, or "labels" / "probabilities" for a 200.
EXPECTED: dict[str, tuple[int, str]] = {
    "bad_request_bucket_name": (400, "bad_request"),
    "bad_request_extra_field": (400, "bad_request"),
    "bad_request_key_traversal": (400, "bad_request"),
    "bad_request_missing_key": (400, "bad_request"),
    "bad_request_not_json": (400, "bad_request"),
    "forbidden_bucket": (403, "forbidden"),
    "forbidden_prefix": (403, "forbidden"),
    "invalid_shape": (422, "invalid_input"),
    "not_found": (404, "not_found"),
    "predict_base64_body": (200, "labels"),
    "predict_csv": (200, "labels"),
    "predict_csv_gz": (200, "labels"),
    "predict_npy": (200, "labels"),
    "predict_npz": (200, "labels"),
    "predict_probabilities": (200, "probabilities"),
    "too_large": (413, "object_too_large"),
    "unsupported_joblib": (415, "unsupported_format"),
    "unsupported_object_array": (415, "unsupported_format"),
    "unsupported_pickle": (415, "unsupported_format"),
}


def _check_answer(
    status: int, body: Any, expected: tuple[int, str], project, pixels: np.ndarray
) -> None:
    assert status == expected[0], body
    if status != 200:
        assert body["error"]["code"] == expected[1], body
        assert body["request_id"]
        return
    labels = np.array(body["labels"] if expected[1] == "probabilities" else body)
    assert np.array_equal(labels, project.expected(pixels)), "labels differ from the model's"
    if expected[1] == "probabilities":
        probabilities = np.array(body["probabilities"])
        assert probabilities.shape == (len(pixels), len(body["classes"]))
        np.testing.assert_allclose(probabilities, project.expected_proba(pixels), atol=1e-4)


def test_every_example_event_is_covered() -> None:
    assert {p.stem for p in EVENTS_DIR.glob("*.json")} == set(EXPECTED)


def test_sam_local_invoke_answers_every_event(sam_project, docker_s3) -> None:
    """``sam local invoke -e events/<name>.json``, one new container each, three at a time."""

    def invoke(name: str) -> dict[str, Any]:
        return sam_local.invoke(
            sam_project.path,
            EVENTS_DIR / f"{name}.json",
            parameters=PARAMETERS,
            env_vars=sam_project.env_vars,
            credentials=docker_s3.function_credentials,
        )

    with ThreadPoolExecutor(3) as pool:
        answers = dict(zip(EXPECTED, pool.map(invoke, EXPECTED), strict=True))
    for name, answer in answers.items():
        assert answer["headers"]["Content-Type"] == "application/json", name
        body = json.loads(answer["body"])
        _check_answer(answer["statusCode"], body, EXPECTED[name], sam_project, docker_s3.pixels)


def _lambda_containers() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=sam.cli.container.type=lambda"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_sam_local_start_api_serves_post_predict(sam_project, docker_s3) -> None:
    """``sam local start-api --warm-containers EAGER``: labels, probabilities, the function's
    own 4xx for hostile bodies; stopping it removes its container."""
    before = _lambda_containers()
    api = sam_local.start_api(
        sam_project.path,
        parameters=PARAMETERS,
        env_vars=sam_project.env_vars,
        credentials=docker_s3.function_credentials,
    )
    try:
        assert len(_lambda_containers() - before) == 1  # EAGER: made at start

        def post(body: Any, **kwargs: Any) -> requests.Response:
            return requests.post(api.predict_url, json=body, timeout=120, **kwargs)

        pixels, npy = docker_s3.pixels, {"bucket": BUCKET, "key": "inputs/digits.npy"}
        for body, kind in (
            (npy, "labels"),
            ({"bucket": BUCKET, "key": "inputs/digits.csv.gz"}, "labels"),
            ({**npy, "return": "probabilities"}, "probabilities"),
        ):
            resp = post(body)
            _check_answer(resp.status_code, resp.json(), (200, kind), sam_project, pixels)
            assert resp.headers["X-Row-Count"] == str(len(pixels))
        hostile = [
            ({"bucket": BUCKET, "key": "inputs/../../etc/passwd"}, 400, "bad_request"),
            ({**npy, "callback": "http://x"}, 400, "bad_request"),
            ({"bucket": "someone-elses-bucket", "key": "inputs/digits.npy"}, 403, "forbidden"),
            ({"bucket": BUCKET, "key": "private/digits.npy"}, 403, "forbidden"),
            ({"bucket": BUCKET, "key": "inputs/digits.pkl"}, 415, "unsupported_format"),
            ({"bucket": BUCKET, "key": "inputs/object-array.npy"}, 415, "unsupported_format"),
        ]  # fmt: skip
        for body, status, code in hostile:
            resp = post(body)
            assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), body
            assert "Traceback" not in resp.text
        not_json = requests.post(api.predict_url, data="bucket=x&key=y", timeout=60)
        assert 400 <= not_json.status_code < 500 and "error" in not_json.json()
    finally:
        assert sam_local.stop_api(Path(api.project))
    assert _lambda_containers() <= before
    assert sam_local.read_api(sam_project.path) is None
