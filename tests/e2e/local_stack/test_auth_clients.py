"""Clients of an authenticated stack (template.yaml, AWS_IAM): a third-party SigV4 signer (curl's
``--aws-sigv4``) is accepted as any SDK's signature would be, the project's client signs as the
stack's caller, and ``predict-batch --local-stack`` works unchanged. Refusals and their exact
answers: test_auth.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from real_stack import PREFIX, npy_bytes, real_stack
from repo_paths import AUTH_TEMPLATE

from mnist_lambda import local_stack
from mnist_lambda.client import Client, EndpointError

pytestmark = pytest.mark.timeout(600)

KEY = PREFIX + "clients.npy"


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:40], dtype=np.uint8)


@pytest.fixture(scope="module")
def iam_stack(tmp_path_factory, small_model_path, rows) -> Iterator[local_stack.StackInfo]:
    state = tmp_path_factory.mktemp("iam-clients")
    args = ["-P", "AuthType=AWS_IAM"]
    with real_stack(state, small_model_path, template=AUTH_TEMPLATE, extra_args=args) as info:
        local_stack.s3_client(info).put_object(Bucket=info.bucket, Key=KEY, Body=npy_bytes(rows))
        yield info


def _curl(info: local_stack.StackInfo, keys: dict[str, str], body: str) -> tuple[int, str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    user = f"{keys['aws_access_key_id']}:{keys['aws_secret_access_key']}"
    cmd = [curl, "-sS", "-o", "-", "-w", "\n%{http_code}", "--user", user,
           "--aws-sigv4", f"aws:amz:{info.region}:execute-api",
           "-H", "Content-Type: application/json", "-X", "POST", "--data-binary", body,
           info.predict_url]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    assert proc.returncode == 0, proc.stderr
    text, _, status = proc.stdout.rpartition("\n")
    return int(status), text


def test_curl_aws_sigv4_is_accepted_for_the_allowed_caller_only(iam_stack, expected) -> None:
    body = json.dumps({"bucket": iam_stack.bucket, "key": KEY})
    status, text = _curl(iam_stack, iam_stack.auth["callers"]["allowed"], body)
    assert status == 200, text
    assert json.loads(text) == expected
    status, text = _curl(iam_stack, iam_stack.auth["callers"]["denied"], body)
    assert status == 403
    assert json.loads(text)["Message"].startswith("User: arn:aws:iam::")


def test_the_project_client_signs_as_the_stacks_caller(iam_stack, expected) -> None:
    with Client(iam_stack.predict_url, auth=local_stack.endpoint_auth(iam_stack)) as client:
        assert client.predict(iam_stack.bucket, KEY).labels.tolist() == expected
    denied = local_stack.endpoint_auth(iam_stack, "denied")
    with (
        Client(iam_stack.predict_url, auth=denied, max_attempts=1) as client,
        pytest.raises(EndpointError) as refused,
    ):
        client.predict(iam_stack.bucket, KEY)
    assert refused.value.status == 403
    with Client(iam_stack.predict_url, max_attempts=1) as client:  # unsigned
        assert client.post({"bucket": iam_stack.bucket, "key": KEY}).body == {
            "message": "Missing Authentication Token"
        }


def test_predict_batch_works_unchanged_on_an_authenticated_stack(
    iam_stack, rows, expected, tmp_path: Path
) -> None:
    pixels, out = tmp_path / "pixels.npy", tmp_path / "labels.npy"
    np.save(pixels, rows)
    cmd = [sys.executable, "-m", "mnist_lambda.cli", "predict-batch", str(pixels),
           "--local-stack", str(iam_stack.state_file.parent), "--out", str(out),
           "--work-prefix", f"{PREFIX}batch/", "--rows-per-chunk", "16", "-q"]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.load(out).tolist() == expected
    assert json.loads(proc.stdout)["rows"] == len(rows)
