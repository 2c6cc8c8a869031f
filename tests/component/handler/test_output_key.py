"""The ``output_key`` request option: labels written to S3 under OUTPUT_PREFIX, 403/400 otherwise.

The handler runs in-process as Lambda calls it, with S3 served over HTTP by moto on 127.0.0.1.
The same path through the local stack (API front + emulator) is in test_batch.py.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from aws_fakes import moto_client
from lambda_fakes import FakeLambdaContext, api_event, assert_error

from mnist_serving import output
from mnist_serving.allowlist import AllowList
from mnist_serving.errors import BadRequest, Forbidden

BUCKET = "mnist-data"
OTHER = "other-bucket"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    return moto_client(moto_endpoint, BUCKET, OTHER)


@pytest.fixture
def make_handler(monkeypatch, small_model_path, aws_env, cold_import):
    """lambda_predict cold-started on moto, allowed this module's buckets, with an output
    prefix (or none)."""
    monkeypatch.setenv("MODEL_PATH", str(small_model_path))
    monkeypatch.setenv("ALLOWED_BUCKETS", f"{BUCKET}/, {OTHER}/inputs/")

    def make(output_prefix: str | None = "predictions/"):
        if output_prefix is None:
            monkeypatch.delenv("OUTPUT_PREFIX", raising=False)
        else:
            monkeypatch.setenv("OUTPUT_PREFIX", output_prefix)
        return cold_import()

    return make


@pytest.fixture(scope="module")
def digits(s3, mnist_xy):
    x, _ = mnist_xy
    buf = io.BytesIO()
    np.save(buf, x[:300])
    s3.put_object(Bucket=BUCKET, Key="inputs/digits.npy", Body=buf.getvalue())
    s3.put_object(Bucket=OTHER, Key="inputs/digits.npy", Body=buf.getvalue())
    return x[:300]


def call(handler, body):
    return handler.lambda_handler(api_event(body), FakeLambdaContext())


def test_labels_written_as_npy_and_json(make_handler, s3, digits):
    handler = make_handler()
    plain = call(handler, {"bucket": BUCKET, "key": "inputs/digits.npy"})
    expected = json.loads(plain["body"])
    for key, decode in (
        ("predictions/run1/part-0.npy", lambda b: np.load(io.BytesIO(b), allow_pickle=False)),
        ("predictions/run1/part-0.json", json.loads),
    ):
        response = call(handler, {"bucket": BUCKET, "key": "inputs/digits.npy", "output_key": key})
        assert response["statusCode"] == 200, response
        body = json.loads(response["body"])
        assert body == {"bucket": BUCKET, "key": key, "rows": 300, "format": key[-4:].strip(".")}
        stored = decode(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert list(np.asarray(stored).tolist()) == expected
        assert "s3_put;dur=" in response["headers"]["Server-Timing"]
    stored = np.load(
        io.BytesIO(s3.get_object(Bucket=BUCKET, Key="predictions/run1/part-0.npy")["Body"].read())
    )
    assert stored.dtype == np.int64 and stored.shape == (300,)


@pytest.mark.parametrize(
    ("bucket", "output_key"),
    [
        (BUCKET, "inputs/overwrite.npy"),  # outside the output prefix
        (BUCKET, "predictionsX.npy"),  # a string prefix match, like IAM: "predictions/" needed
    ],
)
def test_writes_outside_the_output_prefix_are_403(make_handler, s3, digits, bucket, output_key):
    handler = make_handler()
    body = {"bucket": bucket, "key": "inputs/digits.npy", "output_key": output_key}
    assert_error(call(handler, body), 403, "forbidden")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=output_key).get("KeyCount", 0)
    assert listed == 0


def test_output_disabled_without_prefix(make_handler, s3, digits):
    handler = make_handler(output_prefix=None)
    body = {"bucket": BUCKET, "key": "inputs/digits.npy", "output_key": "predictions/x.npy"}
    error = assert_error(call(handler, body), 403, "forbidden")
    assert "OUTPUT_PREFIX" in error["message"]
    # without output_key the function answers as before
    assert call(handler, {"bucket": BUCKET, "key": "inputs/digits.npy"})["statusCode"] == 200


@pytest.mark.parametrize(
    ("output_key", "needle"),
    [
        ("", "must not be empty"),
        (42, "must be a string"),
        ("/predictions/a.npy", "must not start with '/'"),
        ("predictions/../inputs/a.npy", "'.' or '..'"),
        ("predictions/a\x00.npy", "control characters"),
        ("predictions/" + "a" * 1100 + ".npy", "at most 1024"),
        ("predictions/a.csv", "must end with .npy or .json"),
        ("predictions/a.pkl", "must end with .npy or .json"),
    ],
)
def test_bad_output_keys_are_400(make_handler, digits, output_key, needle):
    handler = make_handler()
    body = {"bucket": BUCKET, "key": "inputs/digits.npy", "output_key": output_key}
    error = assert_error(call(handler, body), 400, "bad_request")
    assert needle in error["message"]
    assert "output_key" in error["message"] or "must end with" in error["message"]


def test_check_target_and_prefix_parsing():
    allowed = AllowList.parse("data-bucket/inputs/")
    target = output.check_target("data-bucket", "out/a.json", "out/", allowed)
    assert target.location(3) == {
        "bucket": "data-bucket",
        "key": "out/a.json",
        "rows": 3,
        "format": "json",
    }
    with pytest.raises(Forbidden):
        output.check_target("data-bucket", "inputs/a.json", "out/", allowed)
    with pytest.raises(BadRequest):
        output.check_target("data-bucket", "out/a.txt", "out/", allowed)
    assert output.parse_prefix(" predictions/ ") == "predictions/"
    assert output.parse_prefix(None) == ""
    for bad in ("/abs/", "a*", "a,b"):
        with pytest.raises(ValueError):
            output.parse_prefix(bad)
