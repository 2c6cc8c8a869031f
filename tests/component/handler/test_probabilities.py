"""``"return": "probabilities"``: labels, probabilities and classes in the answer or in S3, the
400s of a bad value, the 413 of an answer over Lambda's response limit, the time budget.

The handler runs in-process as Lambda calls it, with S3 served over HTTP by moto on 127.0.0.1.
The same requests through the local stack are in tests/e2e/local_stack/test_hostile_inputs.py.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from aws_fakes import moto_client
from lambda_fakes import FakeLambdaContext, api_event, assert_error, load_event
from openapi_contract import check_documented

from mnist_serving.budget import Budget
from mnist_serving.model import load
from mnist_serving.predictions import PROBABILITY_DECIMALS

BUCKET = "mnist-data"
KEY = "inputs/digits.npy"
HALF_STEP = 0.5 * 10**-PROBABILITY_DECIMALS


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    return moto_client(moto_endpoint, BUCKET)


@pytest.fixture
def handler(monkeypatch, small_model_path, aws_env, cold_import):
    monkeypatch.setenv("MODEL_PATH", str(small_model_path))
    monkeypatch.setenv("ALLOWED_BUCKETS", f"{BUCKET}/inputs/, {BUCKET}/predictions/")
    monkeypatch.setenv("OUTPUT_PREFIX", "predictions/")
    return cold_import()


@pytest.fixture(scope="module")
def digits(s3, unseen_pixels) -> np.ndarray:
    x = unseen_pixels[:300]
    buf = io.BytesIO()
    np.save(buf, x)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=buf.getvalue())
    return x


@pytest.fixture(scope="module")
def model(small_model_path):
    return load(small_model_path)


class Watched:
    """A model whose predict/predict_proba report the rows of every call to ``on_call``."""

    def __init__(self, model, on_call) -> None:
        self.model, self.on_call, self.classes = model, on_call, model.classes

    def predict(self, pixels):
        self.on_call(len(pixels))
        return self.model.predict(pixels)

    def predict_proba(self, pixels):
        self.on_call(len(pixels))
        return self.model.predict_proba(pixels)


def call(handler, context: FakeLambdaContext | None = None, **fields) -> dict:
    response = handler.lambda_handler(
        api_event({"bucket": BUCKET, "key": KEY, **fields}), context or FakeLambdaContext()
    )
    json.dumps(response)  # API Gateway needs it JSON-serialisable
    return response


def ok_body(response: dict):
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    check_documented(200, body)
    return body


def stored(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def assert_consistent(answer: dict, rows: int) -> None:
    """Rows sum to 1 (within the rounding), and each label is a largest column of its row."""
    p = np.asarray(answer["probabilities"])
    labels = np.asarray(answer["labels"])
    classes = np.asarray(answer["classes"])
    assert p.shape == (rows, len(classes)) and labels.shape == (rows,)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=len(classes) * HALF_STEP)
    at_label = p[np.arange(rows), np.searchsorted(classes, labels)]
    np.testing.assert_array_equal(at_label, p.max(axis=1))


# --- 200 -------------------------------------------------------------------------------------


def test_without_return_the_answer_stays_the_bare_array(handler, digits, model):
    plain = ok_body(call(handler))
    assert plain == model.predict(digits).tolist()
    assert ok_body(call(handler, **{"return": "labels"})) == plain


def test_probabilities_answer(handler, digits, model):
    response = call(handler, **{"return": "probabilities"})
    answer = ok_body(response)
    assert list(answer) == ["labels", "probabilities", "classes"]
    assert answer["classes"] == model.classes.tolist() == list(range(10))
    assert all(type(c) is int for c in answer["classes"])
    # the labels are those of the labels answer; the probabilities are the model's, rounded
    assert answer["labels"] == model.predict(digits).tolist()
    expected = model.predict_proba(digits)
    got = np.asarray(answer["probabilities"])
    assert np.abs(got - expected).max() <= HALF_STEP + 1e-7
    assert_consistent(answer, len(digits))
    # compact JSON: every number has at most 4 decimals, none in exponent notation
    text = response["body"]
    start = text.index('"probabilities":') + len('"probabilities":')
    numbers = re.findall(r"[-+.\deE]+", text[start : text.index("]]")])
    assert numbers and max(len(n) for n in numbers) <= 6
    assert all(n == repr(round(float(n), PROBABILITY_DECIMALS)) for n in numbers)
    headers = response["headers"]
    assert headers["X-Row-Count"] == str(len(digits))
    for step in ("s3;dur=", "decode;dur=", "predict;dur=", "encode;dur="):
        assert step in headers["Server-Timing"]


def test_the_example_event_asks_for_probabilities(handler, digits, model):
    """events/predict_probabilities.json, the example to copy (``sam local invoke -e``)."""
    event = load_event("predict_probabilities")
    answer = ok_body(handler.lambda_handler(event, FakeLambdaContext()))
    assert answer["labels"] == model.predict(digits).tolist()
    assert_consistent(answer, len(digits))


def test_a_single_row_and_an_exact_training_digit(handler, s3, mnist_xy, model):
    """Row 0 of the training digits: its own neighbour at distance 0 takes all the weight."""
    buf = io.BytesIO()
    np.save(buf, mnist_xy[0][:1])
    s3.put_object(Bucket=BUCKET, Key="inputs/one.npy", Body=buf.getvalue())
    answer = ok_body(call(handler, key="inputs/one.npy", **{"return": "probabilities"}))
    label = int(mnist_xy[1][0])
    assert answer["labels"] == [label]
    row = answer["probabilities"][0]
    assert row[label] == pytest.approx(1.0, abs=HALF_STEP) and sum(row) == pytest.approx(1.0)


# --- 400: the value of "return" --------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["Probabilities", "proba", "", "labels ", "p" * 10_000, 1, 0.5, True, None,
     ["probabilities"], {"probabilities": True}],
    ids=lambda v: repr(v)[:20],
)  # fmt: skip
def test_any_other_return_value_is_a_400_naming_the_allowed_ones(handler, digits, value):
    error = assert_error(call(handler, **{"return": value}), 400, "bad_request")
    assert "'return'" in error["message"]
    assert "'labels', 'probabilities'" in error["message"]
    assert len(error["message"]) < 120  # the value is not echoed


# --- output_key -------------------------------------------------------------------------------


def test_probabilities_written_as_json_are_the_answer(handler, s3, digits):
    key = "predictions/p/part-0.json"
    response = call(handler, output_key=key, **{"return": "probabilities"})
    assert ok_body(response) == {"bucket": BUCKET, "key": key, "rows": 300, "format": "json"}
    assert response["headers"]["X-Row-Count"] == "300"
    direct = json.loads(call(handler, **{"return": "probabilities"})["body"])
    assert json.loads(stored(s3, key)) == direct


def test_probabilities_written_as_npz_unrounded(handler, s3, digits, model):
    key = "predictions/p/part-0.npz"
    response = call(handler, output_key=key, **{"return": "probabilities"})
    assert ok_body(response) == {"bucket": BUCKET, "key": key, "rows": 300, "format": "npz"}
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "application/zip"
    with np.load(io.BytesIO(stored(s3, key)), allow_pickle=False) as data:
        assert sorted(data.files) == ["classes", "labels", "probabilities"]
        labels, p, classes = data["labels"], data["probabilities"], data["classes"]
    assert labels.dtype == np.int64 and p.dtype == np.float32 and classes.dtype == np.int64
    np.testing.assert_array_equal(labels, model.predict(digits))
    np.testing.assert_array_equal(p, model.predict_proba(digits))  # not rounded
    np.testing.assert_array_equal(classes, model.classes)


def test_npy_cannot_hold_probabilities(handler, s3, digits):
    key = "predictions/p/part-0.npy"
    response = call(handler, output_key=key, **{"return": "probabilities"})
    error = assert_error(response, 400, "bad_request")
    assert ".json or .npz" in error["message"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) == 0


def test_without_probabilities_output_key_is_as_before(handler, s3, digits, model):
    key = "predictions/l/part-0.npy"
    assert ok_body(call(handler, output_key=key))["format"] == "npy"
    labels = np.load(io.BytesIO(stored(s3, key)), allow_pickle=False)
    np.testing.assert_array_equal(labels, model.predict(digits))
    error = assert_error(call(handler, output_key="predictions/l/x.npz"), 400, "bad_request")
    assert "must end with .npy or .json" in error["message"]
    assert "probabilities" in error["message"]


def test_a_forbidden_output_key_is_403_with_probabilities_too(handler, digits):
    response = call(handler, output_key="inputs/x.npz", **{"return": "probabilities"})
    assert_error(response, 403, "forbidden")


# --- 413: an answer over Lambda's response limit ---------------------------------------------


def test_an_answer_over_the_response_limit_is_a_413(handler, s3, digits, monkeypatch):
    labels_bytes = len(call(handler)["body"])
    monkeypatch.setattr(handler, "RESPONSE_LIMIT_BYTES", 4 * labels_bytes)
    # ~10x the labels: over the limit
    error = assert_error(call(handler, **{"return": "probabilities"}), 413, "response_too_large")
    assert "output_key" in error["message"] and "fewer rows" in error["message"]
    assert f"{handler.RESPONSE_LIMIT_BYTES:,}" in error["message"]
    check_documented(413, {"error": error, "request_id": "r"})
    # the labels fit; written to S3, so do the probabilities
    assert call(handler)["statusCode"] == 200
    response = call(handler, output_key="predictions/big.npz", **{"return": "probabilities"})
    assert ok_body(response)["rows"] == len(digits)


def test_the_limit_counts_the_whole_response_as_lambda_sends_it(handler, digits, monkeypatch):
    response = call(handler, **{"return": "probabilities"})
    whole = len(json.dumps(response))
    assert whole > len(response["body"])
    monkeypatch.setattr(handler, "RESPONSE_LIMIT_BYTES", whole + 50)  # room for the timings
    assert call(handler, **{"return": "probabilities"})["statusCode"] == 200
    monkeypatch.setattr(handler, "RESPONSE_LIMIT_BYTES", len(response["body"]) + 10)
    response = call(handler, **{"return": "probabilities"})
    assert_error(response, 413, "response_too_large")


def test_the_default_limit_is_lambdas(handler):
    from mnist_lambda.aws_limits import LAMBDA_RESPONSE_BYTES

    assert handler.RESPONSE_LIMIT_BYTES == LAMBDA_RESPONSE_BYTES == 6_291_556


# --- the time budget: one sliced predict for labels and probabilities ------------------------


@pytest.mark.parametrize("probabilities", [False, True])
def test_predict_within_budget_slices_both_the_same_way(
    handler, model, digits, monkeypatch, probabilities
):
    monkeypatch.setattr(handler, "PREDICT_SLICE_ROWS", 64)
    calls: list[int] = []
    watched = Watched(model, calls.append)
    budget = Budget(FakeLambdaContext())
    got = handler.predict_within_budget(watched, digits, budget, probabilities=probabilities)
    assert calls == [64, 64, 64, 64, 44]
    if probabilities:  # the projection's float32 rounding depends on the batch: ~1e-7
        np.testing.assert_allclose(got, model.predict_proba(digits), rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, model.predict(digits))
    assert got.dtype == (np.float32 if probabilities else np.int64)


def test_probabilities_running_out_of_time_mid_predict_is_a_504(handler, digits, monkeypatch):
    monkeypatch.setattr(handler, "PREDICT_SLICE_ROWS", 100)
    context = FakeLambdaContext(remaining_ms=[20_000])

    def slow(rows: int) -> None:
        context.remaining_ms[:] = [100]  # the first slice "took" the rest of the time

    monkeypatch.setattr(handler, "MODEL", Watched(handler.MODEL, slow))
    response = call(handler, context, **{"return": "probabilities"})
    error = assert_error(response, 504, "timeout")
    assert "after predicting 100 of 300 rows" in error["message"]


# --- an ONNX model: the same contract ---------------------------------------------------------


def test_an_onnx_model_answers_probabilities_the_same_way(
    monkeypatch, logistic_onnx, aws_env, cold_import, s3, digits
):
    monkeypatch.setenv("MODEL_PATH", str(logistic_onnx.path))
    monkeypatch.setenv("ALLOWED_BUCKETS", f"{BUCKET}/inputs/")
    handler = cold_import()
    plain = ok_body(call(handler))
    response = call(handler, **{"return": "probabilities"})
    answer = ok_body(response)
    assert answer["labels"] == plain  # the graph's label is the argmax of its probabilities
    assert answer["classes"] == list(range(10))
    assert_consistent(answer, len(digits))
    expected = handler.MODEL.predict_proba(digits)
    assert np.abs(np.asarray(answer["probabilities"]) - expected).max() <= HALF_STEP + 1e-7
    per_row = len(response["body"]) / len(digits)
    assert per_row <= 74  # the batch planner's bound (batch.JSON_BYTES_PER_PROBABILITY_ROW)
