"""lambda_predict.lambda_handler, called in-process the way Lambda calls it, with S3 served over
real HTTP by moto (the stack's S3Server, without IAM, on a free localhost port)."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import io
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aws_fakes import moto_client
from http_stub import StubReply, closed_port, stub_http_server
from lambda_fakes import FakeLambdaContext, api_event, assert_error, event_body, load_event
from repo_paths import EVENTS_DIR, LAMBDA_APP

from mnist_serving import logs
from mnist_serving.model import file_sha256, load

BUCKET = "mnist-data"
OTHER_BUCKET = "someone-elses-bucket"
ALLOWED = f"{BUCKET}/inputs/, open-data-bucket"

# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(moto_endpoint: str):
    """A test-side S3 client on moto (explicit settings, no env), with the test buckets."""
    client = moto_client(moto_endpoint, BUCKET, OTHER_BUCKET, "open-data-bucket")
    return client


@pytest.fixture
def make_handler(monkeypatch: pytest.MonkeyPatch, small_model_path, aws_env, cold_import):
    """(Re)import lambda_predict with MODEL_PATH and the given env, as a cold start would."""

    def make(**env: str | None):
        settings = {
            "MODEL_PATH": str(small_model_path),
            "ALLOWED_BUCKETS": ALLOWED,
            "MAX_OBJECT_BYTES": None,
            "LOG_LEVEL": "INFO",
            **env,
        }
        for name, value in settings.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return cold_import()

    return make


@pytest.fixture
def handler(make_handler):
    return make_handler()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """The package's log output during the test, one JSON line per record."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    capture = Capture()
    capture.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(logs.LOGGER_NAME)
    logger.addHandler(capture)
    yield lines
    logger.removeHandler(capture)


@pytest.fixture(scope="module")
def digits(unseen_pixels) -> tuple[np.ndarray, np.ndarray]:
    """300 digits the small model was not fitted on, and 50 others."""
    x = unseen_pixels
    assert len(x) >= 350
    return x[:300].copy(), x[300:350].copy()


@pytest.fixture(scope="module")
def expected(small_model_path, digits) -> tuple[np.ndarray, np.ndarray]:
    """The model's own predictions for the same rows (the parity reference)."""
    model = load(small_model_path)
    many, few = digits
    return model.predict(many), model.predict(few)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def csv_bytes(array: np.ndarray, header: str | None = None) -> bytes:
    lines = [header] if header is not None else []
    lines += [",".join(map(str, row)) for row in array.tolist()]
    return ("\n".join(lines) + "\n").encode()


def invoke(handler, event: dict, context: FakeLambdaContext | None = None) -> dict:
    response = handler.lambda_handler(event, context or FakeLambdaContext())
    json.dumps(response)  # API Gateway needs it JSON-serialisable
    return response


def put(s3, key: str, data: bytes, bucket: str = BUCKET, **kwargs) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data, **kwargs)


def request_for(key: str, bucket: str = BUCKET) -> dict:
    return api_event({"bucket": bucket, "key": key})


# --- 200 -------------------------------------------------------------------------------------


def test_npy_predictions_match_the_model(handler, s3, digits, expected, small_model_path):
    event = load_event("predict_npy")
    put(s3, event_body(event)["key"], npy_bytes(digits[0]))
    context = FakeLambdaContext(aws_request_id="req-npy-1")

    response = invoke(handler, event, context)

    assert response["statusCode"] == 200, response["body"]
    assert np.array_equal(np.array(json.loads(response["body"])), expected[0])
    headers = response["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Model-Sha256"] == file_sha256(small_model_path)
    assert headers["X-Model-Version"] == "unknown"  # no manifest.json beside the test model
    assert headers["X-Row-Count"] == str(len(digits[0]))
    assert headers["X-Request-Id"] == "req-npy-1"
    timing = headers["Server-Timing"]
    for step in ("s3;dur=", "decode;dur=", "predict;dur="):
        assert step in timing


def test_npz_uses_the_array_named_x(handler, s3, digits, expected):
    event = load_event("predict_npz")
    buf = io.BytesIO()
    np.savez_compressed(buf, X=digits[0], y=np.arange(len(digits[0])))
    put(s3, event_body(event)["key"], buf.getvalue())

    response = invoke(handler, event)

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[0].tolist()


def test_npz_with_one_unnamed_array(handler, s3, digits, expected):
    buf = io.BytesIO()
    np.savez(buf, digits[1].astype(np.float32))
    put(s3, "inputs/one-array.npz", buf.getvalue())

    response = invoke(handler, request_for("inputs/one-array.npz"))

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[1].tolist()


def test_csv_with_a_header_line(handler, s3, digits, expected):
    event = load_event("predict_csv")
    header = ",".join(f"pixel{i}" for i in range(784))
    put(s3, event_body(event)["key"], csv_bytes(digits[1], header))

    response = invoke(handler, event)

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[1].tolist()
    assert response["headers"]["X-Row-Count"] == str(len(digits[1]))


def test_csv_gz_with_pandas_column_labels(handler, s3, digits, expected):
    event = load_event("predict_csv_gz")
    header = ",".join(str(i) for i in range(784))  # DataFrame(x).to_csv(index=False)
    put(s3, event_body(event)["key"], gzip.compress(csv_bytes(digits[1], header)))

    response = invoke(handler, event)

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[1].tolist()


def test_base64_encoded_body(handler, s3, digits, expected):
    event = load_event("predict_base64_body")
    assert event["isBase64Encoded"] is True
    put(s3, event_body(event)["key"], npy_bytes(digits[1]))

    response = invoke(handler, event)

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[1].tolist()


def test_float_pixels_that_are_whole_numbers_are_accepted(handler, s3, digits, expected):
    put(s3, "inputs/float.npy", npy_bytes(digits[1].astype(np.float64)))
    response = invoke(handler, request_for("inputs/float.npy"))
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[1].tolist()


def test_single_row(handler, s3, digits, expected):
    put(s3, "inputs/one.csv", csv_bytes(digits[1][:1]))
    response = invoke(handler, request_for("inputs/one.csv"))
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == expected[1][:1].tolist()


def test_prefix_less_allow_list_entry_allows_the_whole_bucket(handler, s3, digits):
    put(s3, "anywhere/x.npy", npy_bytes(digits[1]), bucket="open-data-bucket")
    response = invoke(handler, request_for("anywhere/x.npy", bucket="open-data-bucket"))
    assert response["statusCode"] == 200, response["body"]


def test_a_request_logs_one_json_line_with_id_status_rows_timings(handler, s3, digits, log_lines):
    put(s3, "inputs/logged.npy", npy_bytes(digits[1]))
    invoke(handler, request_for("inputs/logged.npy"), FakeLambdaContext(aws_request_id="r-9"))

    records = [json.loads(line) for line in log_lines]  # every line is one JSON object
    done = [r for r in records if r["message"] == "request finished"]
    assert len(done) == 1
    assert done[0]["request_id"] == "r-9"
    assert done[0]["status"] == 200
    assert done[0]["rows"] == len(digits[1])
    assert done[0]["apigw_request_id"] == load_event("predict_npy")["requestContext"]["requestId"]
    assert set(done[0]["timings_ms"]) == {"s3", "decode", "predict", "encode"}
    assert done[0]["level"] == "INFO"


def test_manifest_supplies_version_and_run_id(
    make_handler, s3, digits, small_model_path, tmp_path
):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model_path = model_dir / "model.npz"
    shutil.copy(small_model_path, model_path)
    manifest = {
        "model_file": "model.npz",
        "sha256": file_sha256(model_path),
        "version": "2026.11.27-1",
        "run_id": "run-42",
    }
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    handler = make_handler(MODEL_PATH=str(model_path))
    put(s3, "inputs/m.npy", npy_bytes(digits[1]))

    response = invoke(handler, request_for("inputs/m.npy"))

    assert response["statusCode"] == 200
    assert response["headers"]["X-Model-Version"] == "2026.11.27-1"
    assert response["headers"]["X-Model-Run-Id"] == "run-42"
    assert response["headers"]["X-Model-Sha256"] == manifest["sha256"]


def test_a_manifest_about_another_file_is_ignored(make_handler, small_model_path, tmp_path):
    model_path = tmp_path / "candidate.npz"
    shutil.copy(small_model_path, model_path)
    manifest = {"model_file": "model.npz", "sha256": "0" * 64, "version": "v1"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    handler = make_handler(MODEL_PATH=str(model_path))
    assert handler.MODEL_INFO.version == "unknown"
    assert handler.MODEL_INFO.sha256 == file_sha256(small_model_path)


def test_a_stale_manifest_fails_the_import(make_handler, small_model_path, tmp_path):
    model_path = tmp_path / "model.npz"
    shutil.copy(small_model_path, model_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"sha256": "0" * 64, "version": "v1"}))
    with pytest.raises(ValueError, match="manifest"):
        make_handler(MODEL_PATH=str(model_path))


def test_a_missing_model_fails_the_import_naming_model_path(make_handler, tmp_path):
    missing = tmp_path / "nowhere" / "model.npz"
    with pytest.raises(FileNotFoundError, match="MODEL_PATH=") as info:
        make_handler(MODEL_PATH=str(missing))
    assert str(missing) in str(info.value)


def test_a_bad_max_object_bytes_fails_the_import(make_handler):
    with pytest.raises(ValueError, match="MAX_OBJECT_BYTES"):
        make_handler(MAX_OBJECT_BYTES="fifty megabytes")


def test_the_handler_loads_as_a_plain_file_module(small_model_path, monkeypatch):
    """Tools may exec the file without registering it in sys.modules (the local stack does)."""
    monkeypatch.setenv("MODEL_PATH", str(small_model_path))
    spec = importlib.util.spec_from_file_location("_probe", LAMBDA_APP / "lambda_predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.lambda_handler)


@pytest.mark.parametrize("path", sorted(EVENTS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_event_fixtures_are_rest_proxy_events(path):
    event = json.loads(path.read_text())
    for key in (
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    ):
        assert key in event, key
    assert (event["httpMethod"], event["path"], event["resource"]) == (
        "POST",
        "/predict",
        "/predict",
    )
    assert event["requestContext"]["stage"] == "dev" and event["requestContext"]["requestId"]
    assert isinstance(event["body"], str)
    tested = "".join(t.read_text() for t in Path(__file__).parent.glob("test_*.py"))
    assert f'"{path.stem}"' in tested, f"{path.name} is used by no test"


def test_the_s3_client_is_created_once_and_reused(handler, aws_env):
    from mnist_serving import s3io

    client = s3io.get_client()
    assert s3io.get_client() is client
    config = client.meta.config
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] <= 3
    assert config.connect_timeout <= 5 and config.read_timeout <= 10
    assert client.meta.endpoint_url == aws_env  # AWS_ENDPOINT_URL_S3, no endpoint code


def test_the_handler_imports_no_training_stack_and_no_onnx_runtime_for_npz(small_model_path):
    code = (
        "import sys, lambda_predict\n"
        "heavy = ('pandas', 'sklearn', 'scipy', 'matplotlib', 'joblib', 'onnxruntime')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "MODEL_PATH": str(small_model_path), "PYTHONPATH": str(LAMBDA_APP)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=LAMBDA_APP,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- 400 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "bad_request_not_json",
        "bad_request_extra_field",
        "bad_request_missing_key",
        "bad_request_bucket_name",
        "bad_request_key_traversal",
    ],
)
def test_bad_request_events(handler, name):
    assert_error(invoke(handler, load_event(name)), 400, "bad_request")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (None, "empty body"),
        ("", "empty body"),
        ("[1, 2]", "JSON object"),
        ('"just a string"', "JSON object"),
        ('{"bucket": "mnist-data", "key": "inputs/a.npy",', "not valid JSON"),
        ('{"bucket": 42, "key": "inputs/a.npy"}', "'bucket' must be a string"),
        ('{"bucket": "mnist-data", "key": ["inputs/a.npy"]}', "'key' must be a string"),
        ('{"key": "inputs/a.npy"}', "missing field"),
        ("{}", "missing field"),
        ('{"bucket": "mnist-data", "key": "inputs/a.npy", "extra": 1}', "unknown field"),
        ('{"bucket": "mnist-data", "key": "inputs/a.npy", "outputKey": "o"}', "unknown field"),
    ],
)
def test_malformed_bodies(handler, body, needle):
    error = assert_error(invoke(handler, api_event(body, raw=True)), 400, "bad_request")
    assert needle in error["message"]


def test_invalid_base64_body(handler):
    event = api_event({"bucket": BUCKET, "key": "inputs/a.npy"})
    event["isBase64Encoded"] = True  # but the body is plain JSON, not base64
    assert_error(invoke(handler, event), 400, "bad_request")


@pytest.mark.parametrize(
    "bucket",
    [
        "ab",
        "Mnist-Data",
        "mnist_data",
        "-mnist",
        "mnist-",
        "a" * 64,
        "mnist..data",
        "10.0.0.1",
        "xn--mnist",
        "mnist data",
        "arn:aws:s3:::mnist-data",
    ],
)
def test_invalid_bucket_names(handler, bucket):
    response = invoke(handler, api_event({"bucket": bucket, "key": "inputs/a.npy"}))
    error = assert_error(response, 400, "bad_request")
    assert "bucket" in error["message"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "k" * 1021 + ".npy" + "x",
        "é" * 520 + ".npy",
        "inputs/a\x00.npy",
        "inputs/a\n.npy",
        "inputs/\x7f.npy",
        "/inputs/a.npy",
        "inputs/../secret.npy",
        "../a.npy",
        "inputs/./a.npy",
        "inputs/..",
    ],
)
def test_invalid_keys(handler, key):
    response = invoke(handler, api_event({"bucket": BUCKET, "key": key}))
    error = assert_error(response, 400, "bad_request")
    assert "'key'" in error["message"]


def test_a_non_dict_event_is_a_400(handler):
    assert_error(invoke(handler, ["not", "an", "event"]), 400, "bad_request")


# --- 403 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forbidden_bucket", "forbidden_prefix"])
def test_outside_the_allow_list(handler, s3, name, digits):
    event = load_event(name)
    body = event_body(event)
    put(s3, body["key"], npy_bytes(digits[1]), bucket=body["bucket"])  # it exists, yet...
    error = assert_error(invoke(handler, event), 403, "forbidden")
    assert "ALLOWED_BUCKETS" in error["message"]


def test_a_prefix_is_matched_as_a_string_prefix(handler, s3):
    # "inputs/" is allowed; "inputs-old/" and "input" are not.
    for key in ("inputs-old/a.npy", "input.npy", "INPUTS/a.npy"):
        assert_error(invoke(handler, request_for(key)), 403, "forbidden")


@pytest.mark.parametrize("value", [None, "", " , "])
def test_an_empty_allow_list_allows_nothing(make_handler, value):
    handler = make_handler(ALLOWED_BUCKETS=value)
    error = assert_error(invoke(handler, load_event("predict_npy")), 403, "forbidden")
    assert "ALLOWED_BUCKETS is empty" in error["message"]


def test_s3_access_denied_is_a_403(make_handler):
    xml = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message></Error>"
    )
    replies = {
        "HEAD": StubReply(status=403),
        "GET": StubReply(status=403, headers={"Content-Type": "application/xml"}, body=xml),
    }
    with stub_http_server(replies) as url:
        handler = make_handler(AWS_ENDPOINT_URL_S3=url)  # its S3 client is made at init
        error = assert_error(invoke(handler, load_event("predict_npy")), 403, "forbidden")
    assert "S3 denied access" in error["message"]


# --- 404 -------------------------------------------------------------------------------------


def test_missing_object(handler, s3):
    error = assert_error(invoke(handler, load_event("not_found")), 404, "not_found")
    assert "s3://mnist-data/inputs/no-such-object.npy" in error["message"]


def test_missing_bucket(make_handler, s3):
    handler = make_handler(ALLOWED_BUCKETS="no-such-bucket-here")
    response = invoke(handler, request_for("a.npy", bucket="no-such-bucket-here"))
    assert_error(response, 404, "not_found")


# --- 413 -------------------------------------------------------------------------------------


def test_an_object_over_the_limit_is_refused_before_download(make_handler, s3, digits):
    from mnist_serving import s3io

    handler = make_handler(MAX_OBJECT_BYTES="10000")
    event = load_event("too_large")
    put(s3, event_body(event)["key"], npy_bytes(digits[0]))  # ~235 KB
    gets: list[str] = []
    client = s3io.get_client()
    client.meta.events.register("before-call.s3.GetObject", lambda **kw: gets.append("get"))
    try:
        error = assert_error(invoke(handler, event), 413, "object_too_large")
    finally:
        client.meta.events.unregister("before-call.s3.GetObject")
    assert "MAX_OBJECT_BYTES" in error["message"]
    assert gets == []  # refused on HEAD's ContentLength: nothing was downloaded


def test_a_gzip_bomb_is_refused(make_handler, s3):
    handler = make_handler(MAX_OBJECT_BYTES="100000")
    put(s3, "inputs/bomb.csv.gz", gzip.compress(b"0," * 5_000_000))  # 10 MB -> ~10 KB
    error = assert_error(
        invoke(handler, request_for("inputs/bomb.csv.gz")), 413, "object_too_large"
    )
    assert "decompressed" in error["message"]


# --- 415 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["unsupported_pickle", "unsupported_joblib"])
def test_pickle_and_joblib_keys_are_refused_without_reading_them(handler, s3, name):
    error = assert_error(invoke(handler, load_event(name)), 415, "unsupported_format")
    assert "pickle" in error["message"] and "remote code execution" in error["message"]


def test_pickled_content_under_an_npy_key_is_refused(handler, s3, digits):
    put(s3, "inputs/sneaky.npy", pickle.dumps(digits[1]))
    error = assert_error(
        invoke(handler, request_for("inputs/sneaky.npy")), 415, "unsupported_format"
    )
    assert "pickle" in error["message"]


def test_object_dtype_npy_is_refused(handler, s3):
    event = load_event("unsupported_object_array")
    objects = np.empty((1, 784), dtype=object)
    objects[:] = 0
    put(s3, event_body(event)["key"], npy_bytes(objects, allow_pickle=True))
    error = assert_error(invoke(handler, event), 415, "unsupported_format")
    assert "pickled arrays are refused" in error["message"]


def test_object_dtype_inside_npz_is_refused(handler, s3):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("X.npy", npy_bytes(np.array([[object()]], dtype=object), True))
    put(s3, "inputs/objects.npz", buf.getvalue())
    error = assert_error(
        invoke(handler, request_for("inputs/objects.npz")), 415, "unsupported_format"
    )
    assert "pickled arrays are refused" in error["message"]


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("inputs/digits.parquet", b"PAR1...."),
        ("inputs/digits.txt", b"1,2,3\n"),
        ("inputs/digits", b"1,2,3\n"),
        ("inputs/digits.npy", b"1,2,3\n"),  # suffix says npy, content is text
        ("inputs/digits.npz", b"\x93NUMPY not a zip"),
        ("inputs/digits.csv.gz", b"0,1,2\n"),  # not gzip
        ("inputs/digits.csv", b"\x1f\x8b\x08\x00 gzip bytes under .csv"),
        ("inputs/digits.csv", b"\xff\xfe\x00b\x00i\x00n"),
        (
            "inputs/truncated.npy",
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': "
            b"False, 'shape': (10, 784), }" + b" " * 50 + b"\n",
        ),
    ],
)
def test_unsupported_or_mismatched_formats(handler, s3, key, data):
    put(s3, key, data)
    assert_error(invoke(handler, request_for(key)), 415, "unsupported_format")


# --- 422 -------------------------------------------------------------------------------------


def _pixels(rows: int = 3, value: float = 0, dtype=np.float64) -> np.ndarray:
    return np.full((rows, 784), value, dtype=dtype)


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (_pixels()[:, :783], "784 columns"),
        (_pixels(0), "no rows"),
        (np.zeros((2, 28, 28), dtype=np.uint8), "reshape"),
        (np.zeros(784, dtype=np.uint8), "2-D"),
        (np.where(np.eye(3, 784) > 0, np.nan, 0.0), "NaN"),
        (np.where(np.eye(3, 784) > 0, np.inf, 0.0), "infinite"),
        (_pixels(value=256), "0..255"),
        (_pixels(value=-1, dtype=np.int16), "0..255"),
        (_pixels(value=12.5), "whole numbers"),
        (np.full((2, 784), "1", dtype="<U1"), "numbers"),
        (np.zeros((2, 784), dtype=bool), "numbers"),
        (np.zeros((2, 784), dtype=np.complex64), "numbers"),
    ],
)
def test_invalid_pixels(handler, s3, array, needle):
    put(s3, "inputs/bad.npy", npy_bytes(array))
    error = assert_error(invoke(handler, request_for("inputs/bad.npy")), 422, "invalid_input")
    assert needle in error["message"]


def test_wrong_shape_event(handler, s3):
    event = load_event("invalid_shape")
    put(s3, event_body(event)["key"], npy_bytes(np.zeros((10, 783), dtype=np.uint8)))
    error = assert_error(invoke(handler, event), 422, "invalid_input")
    assert "got 783" in error["message"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0," * 783 + "x\n", "not a number"),
        ("0," * 783 + "0\n" + "0," * 782 + "0\n", "differ in length"),
        ("0," * 783 + "nan\n", "NaN"),
        ("7," + "0," * 783 + "0\n", "index or label column"),  # pandas to_csv() with its index
        ("pixel0,pixel1\n", "no rows"),
        ("", "no rows"),
    ],
)
def test_invalid_csv(handler, s3, text, needle):
    put(s3, "inputs/bad.csv", text.encode())
    error = assert_error(invoke(handler, request_for("inputs/bad.csv")), 422, "invalid_input")
    assert needle in error["message"]


def test_npz_with_several_unnamed_arrays(handler, s3):
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros((1, 784)), b=np.zeros((1, 784)))
    put(s3, "inputs/two.npz", buf.getvalue())
    error = assert_error(invoke(handler, request_for("inputs/two.npz")), 422, "invalid_input")
    assert "X, x, features" in error["message"]


# --- 5xx -------------------------------------------------------------------------------------


def test_an_unexpected_s3_error_is_a_502(handler, s3, digits):
    put(s3, "inputs/archived.npy", npy_bytes(digits[1]), StorageClass="GLACIER")
    error = assert_error(invoke(handler, request_for("inputs/archived.npy")), 502, "s3_error")
    assert "InvalidObjectState" in error["message"]


def test_s3_unreachable_is_a_503(make_handler):
    handler = make_handler(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{closed_port()}")
    error = assert_error(invoke(handler, load_event("predict_npy")), 503, "s3_unavailable")
    assert "127.0.0.1" not in error["message"]


def test_too_little_time_left_is_a_504_before_s3(handler):
    context = FakeLambdaContext(remaining_ms=[300])
    error = assert_error(invoke(handler, load_event("predict_npy"), context), 504, "timeout")
    assert "not enough time left" in error["message"]


def test_time_running_out_before_predict_is_a_504(handler, s3, digits, monkeypatch):
    from mnist_serving import payload

    put(s3, "inputs/slow.npy", npy_bytes(digits[1]))
    context = FakeLambdaContext(remaining_ms=[20_000])
    real = payload.load_pixels

    def decode_then_run_late(*args, **kwargs):
        out = real(*args, **kwargs)
        context.remaining_ms[:] = [400]  # decoding "took" almost all the time
        return out

    monkeypatch.setattr(payload, "load_pixels", decode_then_run_late)
    error = assert_error(invoke(handler, request_for("inputs/slow.npy"), context), 504, "timeout")
    assert "predict" in error["message"]


def test_an_s3_read_stalling_past_the_budget_is_a_504(make_handler):
    size = 100_000
    replies = {
        "HEAD": StubReply(headers={"Content-Length": str(size), "ETag": '"abc"'}),
        "GET": StubReply(
            headers={"Content-Length": str(size), "ETag": '"abc"'},
            body=b"\x93NUMPY" + b"\0" * (size - 6),
            stall_after=1000,
        ),
    }
    context = FakeLambdaContext(remaining_ms=[1_600])  # 1.1 s budget: the read times out first
    with stub_http_server(replies) as url:
        handler = make_handler(AWS_ENDPOINT_URL_S3=url)
        error = assert_error(invoke(handler, load_event("predict_npy"), context), 504, "timeout")
    assert "in time" in error["message"]


def test_an_unexpected_failure_is_a_generic_500_logged_with_traceback(
    handler, s3, digits, monkeypatch, log_lines
):
    class BrokenModel:
        def predict(self, pixels):
            raise RuntimeError("disk error in /var/task/model/model.npz")

    monkeypatch.setattr(handler, "MODEL", BrokenModel())
    put(s3, "inputs/ok.npy", npy_bytes(digits[1]))

    response = invoke(handler, request_for("inputs/ok.npy"), FakeLambdaContext("req-500"))

    error = assert_error(response, 500, "internal_error")
    assert "/var/task" not in response["body"] and "disk error" not in response["body"]
    assert "request id" in error["message"]
    records = [json.loads(line) for line in log_lines]
    failure = next(r for r in records if r["message"] == "unexpected error")
    assert failure["request_id"] == "req-500"
    assert "Traceback" in failure["exception"] and "disk error" in failure["exception"]
    finished = next(r for r in records if r["message"] == "request finished")
    assert finished["status"] == 500 and finished["level"] == "ERROR"
