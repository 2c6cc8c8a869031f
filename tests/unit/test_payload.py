"""The serving building blocks without S3: payload decoding and validation, request parsing,
the allow-list, the time budget, JSON logs and responses."""

from __future__ import annotations

import gzip
import io
import json
import logging
import pickle

import numpy as np
import pytest
from lambda_fakes import FakeLambdaContext

from mnist_serving import logs, payload
from mnist_serving.allowlist import AllowList
from mnist_serving.budget import Budget
from mnist_serving.errors import (
    AppError,
    BadRequest,
    DeadlineExceeded,
    Forbidden,
    InvalidInput,
    NotFound,
    ObjectTooLarge,
    UnsupportedFormat,
    UpstreamError,
    UpstreamUnavailable,
)
from mnist_serving.request import PredictRequest, parse_event
from mnist_serving.responses import error_response, json_response, server_timing

MAX = 50 * 1024 * 1024


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pixels(mnist_xy) -> np.ndarray:
    return mnist_xy[0][:20].copy()


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        ("a.npy", ".npy"),
        ("dir/a.NPZ", ".npz"),
        ("a.csv", ".csv"),
        ("a.tar.csv.gz", ".csv.gz"),
        ("A.CSV.GZ", ".csv.gz"),
    ],
)
def test_format_follows_the_suffix(key, fmt):
    assert payload.format_for_key(key) == fmt


@pytest.mark.parametrize("key", ["m.pkl", "m.pickle", "m.joblib", "M.PKL"])
def test_pickle_suffixes_are_refused_with_the_reason(key):
    with pytest.raises(UnsupportedFormat, match="remote code execution"):
        payload.format_for_key(key)


@pytest.mark.parametrize("key", ["a.gz", "a.json", "a.parquet", "a", "a.npy.zip", "a.csv.bz2"])
def test_other_suffixes_are_unsupported(key):
    with pytest.raises(UnsupportedFormat, match=r"\.npy, \.npz, \.csv or \.csv\.gz"):
        payload.format_for_key(key)


@pytest.mark.parametrize("fmt", [".npy", ".npz", ".csv", ".csv.gz"])
def test_pickle_bytes_are_refused_whatever_the_suffix(fmt, pixels):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with pytest.raises(UnsupportedFormat, match="pickle"):
            payload.decode(fmt, pickle.dumps(pixels, protocol=protocol), max_bytes=MAX)


def test_npy_round_trip_keeps_dtype_and_values(pixels):
    out = payload.decode(".npy", npy(pixels), max_bytes=MAX)
    assert out.dtype == np.uint8 and np.array_equal(out, pixels)


def test_npy_fortran_order_and_big_endian(pixels):
    data = npy(np.asfortranarray(pixels.astype(">i4")))
    assert np.array_equal(payload.load_pixels(".npy", data, max_bytes=MAX), pixels)


def test_npy_object_arrays_are_refused_as_pickled():
    with pytest.raises(UnsupportedFormat, match="pickled arrays are refused"):
        payload.decode(".npy", npy(np.array([{"a": 1}], dtype=object), True), max_bytes=MAX)


def test_npy_structured_dtype_with_objects_is_refused():
    array = np.zeros(2, dtype=[("a", "u1"), ("b", "O")])
    with pytest.raises(UnsupportedFormat, match="pickled arrays"):
        payload.decode(".npy", npy(array, True), max_bytes=MAX)


def test_npy_truncated_data_is_refused_before_allocation():
    # A header claiming ~780 GB with no data behind it: refused on the header, nothing allocated.
    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (999_999_999, 784)}
    np.lib.format.write_array_header_1_0(buf, header)
    forged = buf.getvalue() + b"\0" * 784
    with pytest.raises(UnsupportedFormat, match="truncated"):
        payload.decode(".npy", forged, max_bytes=MAX)


def test_npz_prefers_x_then_features():
    a = np.ones((1, 784), dtype=np.uint8)
    b = np.zeros((1, 784), dtype=np.uint8)
    assert payload.decode(".npz", npz(X=a, y=b), max_bytes=MAX)[0, 0] == 1
    assert payload.decode(".npz", npz(x=a, labels=b), max_bytes=MAX)[0, 0] == 1
    assert payload.decode(".npz", npz(features=a, other=b), max_bytes=MAX)[0, 0] == 1
    assert payload.decode(".npz", npz(anything=a), max_bytes=MAX)[0, 0] == 1


def test_npz_without_a_clear_array_is_invalid():
    with pytest.raises(InvalidInput, match="2 arrays"):
        payload.decode(".npz", npz(a=np.zeros(1), b=np.zeros(1)), max_bytes=MAX)


def test_npz_member_size_is_checked_before_decompression():
    data = npz(X=np.zeros((1000, 784), dtype=np.uint8))  # compresses to ~1 KB
    assert len(data) < 10_000
    with pytest.raises(ObjectTooLarge, match="uncompressed"):
        payload.decode(".npz", data, max_bytes=100_000)


def test_gunzip_handles_several_members_and_caps_the_output():
    data = gzip.compress(b"1,2\n") + gzip.compress(b"3,4\n")
    assert payload.gunzip(data, max_bytes=100) == b"1,2\n3,4\n"
    with pytest.raises(ObjectTooLarge):
        payload.gunzip(gzip.compress(b"0" * 1000), max_bytes=999)
    assert payload.gunzip(gzip.compress(b"0" * 1000), max_bytes=1000) == b"0" * 1000


def test_gunzip_refuses_truncated_and_corrupt_streams():
    good = gzip.compress(b"1,2,3\n" * 1000)
    with pytest.raises(UnsupportedFormat, match="truncated"):
        payload.gunzip(good[: len(good) // 2], max_bytes=MAX)
    with pytest.raises(UnsupportedFormat, match="gzip"):
        payload.gunzip(good[:10] + b"\xff" * 20, max_bytes=MAX)


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("1,2\n3,4\n", 2),  # no header
        ("a,b\n1,2\n", 1),  # named columns
        ('"pixel0","pixel1"\n1,2\n', 1),  # quoted names
        ("0,1\n5,6\n", 2),  # a short 0..n-1 run could be pixels: data
        ("\ufeffa,b\r\n1,2\r\n\r\n", 1),  # BOM, CRLF, trailing blank line
        (" 1 , 2 \n", 1),  # spaces around numbers
    ],
)
def test_csv_header_detection(text, rows):
    assert payload.decode_csv(text.encode()).shape == (rows, 2)


@pytest.mark.parametrize("start", [0, 1])
def test_csv_pandas_default_column_labels_are_a_header(start):
    header = ",".join(str(i) for i in range(start, start + 784))
    assert payload.decode_csv(f"{header}\n{'0,' * 783}0\n".encode()).shape == (1, 784)


def test_csv_a_corrupt_first_row_is_not_mistaken_for_a_header():
    with pytest.raises(InvalidInput, match="data row 1, column 2"):
        payload.decode_csv(b"1,2x,3\n4,5,6\n")


def test_csv_refuses_binary_content():
    with pytest.raises(UnsupportedFormat):
        payload.decode_csv(b"1,2\x00,3\n")
    with pytest.raises(UnsupportedFormat):
        payload.decode_csv(npy(np.zeros((1, 2))))


# --- validation ------------------------------------------------------------------------------


def test_validation_returns_contiguous_uint8(pixels):
    out = payload.validate_pixels(np.asfortranarray(pixels.astype(np.float32)))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, pixels)


def test_validation_reports_where_the_first_bad_value_is():
    array = np.zeros((4, 784))
    array[2, 17] = 300
    with pytest.raises(InvalidInput, match=r"300 at index \(2, 17\)"):
        payload.validate_pixels(array)


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.zeros((0, 784), dtype=np.uint8), "no rows"),
        (np.zeros((2, 785), dtype=np.uint8), "index or label column"),
        (np.zeros((2, 10), dtype=np.uint8), "784 columns"),
        (np.where(np.eye(1, 784) > 0, np.nan, 0), "1 NaN and 0 infinite"),
        (np.full((1, 784), -np.inf), "0 NaN and 784 infinite"),
        (np.full((1, 784), 0.5, dtype=np.float16), "whole numbers"),
        (np.full((1, 784), 2**40, dtype=np.int64), "0..255"),
        (np.zeros((1, 784), dtype="M8[s]"), "numbers"),
    ],
)
def test_validation_messages(array, pattern):
    with pytest.raises(InvalidInput, match=pattern):
        payload.validate_pixels(array)


# --- request ---------------------------------------------------------------------------------


def event(body, **extra) -> dict:
    return {"body": body if isinstance(body, str) else json.dumps(body), **extra}


def test_a_valid_request():
    req = parse_event(event({"bucket": "mnist-data", "key": "inputs/é ü/a b.npy"}))
    assert req == PredictRequest(bucket="mnist-data", key="inputs/é ü/a b.npy")


def test_keys_of_exactly_1024_bytes_are_fine_1025_are_not():
    parse_event(event({"bucket": "mnist-data", "key": "k" * 1020 + ".npy"}))
    with pytest.raises(BadRequest, match="1025 bytes"):
        parse_event(event({"bucket": "mnist-data", "key": "k" * 1021 + ".npy"}))


def test_bodies_that_are_too_large_are_refused():
    with pytest.raises(BadRequest, match="over"):
        parse_event(event({"bucket": "mnist-data", "key": "a.npy", "pad": "x" * 20_000}))


def test_deeply_nested_json_is_a_400():
    with pytest.raises(BadRequest):
        parse_event(event("[" * 5000 + "]" * 5000))


# --- allow-list ------------------------------------------------------------------------------


def test_allow_list_semantics():
    allowed = AllowList.parse(" mnist-data/inputs/ ,open-bucket,, other/x")
    assert allowed.entries == (("mnist-data", "inputs/"), ("open-bucket", ""), ("other", "x"))
    assert allowed.allows("mnist-data", "inputs/a.npy")
    assert not allowed.allows("mnist-data", "inputs2/a.npy")
    assert allowed.allows("open-bucket", "anything/at/all.csv")
    assert allowed.allows("other", "xylophone.npy")  # a plain string prefix, like IAM's
    assert not allowed.allows("mnist-data-2", "inputs/a.npy")
    with pytest.raises(Forbidden, match="outside"):
        allowed.check("nope-bucket", "a.npy")


def test_allow_list_rejects_entries_that_are_not_buckets():
    with pytest.raises(ValueError, match="ALLOWED_BUCKETS"):
        AllowList.parse("s3://mnist-data/inputs")
    with pytest.raises(ValueError, match="ALLOWED_BUCKETS"):
        AllowList.parse("*")


def test_an_empty_allow_list_says_so():
    with pytest.raises(Forbidden, match="ALLOWED_BUCKETS is empty"):
        AllowList.parse("").check("mnist-data", "a.npy")


# --- budget ----------------------------------------------------------------------------------


def test_budget_follows_the_context():
    context = FakeLambdaContext(remaining_ms=[5_000, 700])
    budget = Budget(context, margin_ms=500)
    assert budget.left_ms() == 4_500
    with pytest.raises(DeadlineExceeded, match="200 ms left, 1000 ms needed"):
        budget.require(1_000, "read the object from S3")


def test_budget_without_a_context_uses_the_default():
    assert 20_000 < Budget(None).left_ms() <= 25_000


# --- errors, responses, logs -----------------------------------------------------------------


def test_every_error_class_has_its_own_status_and_code():
    classes = [
        AppError,
        BadRequest,
        Forbidden,
        NotFound,
        ObjectTooLarge,
        UnsupportedFormat,
        InvalidInput,
        UpstreamError,
        UpstreamUnavailable,
        DeadlineExceeded,
    ]
    statuses = [cls.status for cls in classes]
    assert statuses == [500, 400, 403, 404, 413, 415, 422, 502, 503, 504]
    assert len({cls.code for cls in classes}) == len(classes)
    assert all(issubclass(cls, AppError) for cls in classes)


def test_error_response_shape_and_generic_500():
    response = error_response(NotFound("s3://b/k not found"), "rid", {"X-Request-Id": "rid"})
    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {
        "error": {"code": "not_found", "message": "s3://b/k not found"},
        "request_id": "rid",
    }
    hidden = error_response(KeyError("/var/task/secret"), "rid")
    assert hidden["statusCode"] == 500
    assert "secret" not in hidden["body"] and "KeyError" not in hidden["body"]


def test_json_response_and_server_timing():
    response = json_response(200, [1, 2], {"X-Row-Count": "2"})
    assert response["body"] == "[1,2]"
    assert response["headers"] == {"Content-Type": "application/json", "X-Row-Count": "2"}
    assert server_timing({"s3": 1.234, "predict": 10}) == "s3;dur=1.2, predict;dur=10.0"


def test_json_formatter_one_line_with_request_id_extras_and_traceback():
    record = logging.LogRecord(
        "mnist_serving.x", logging.ERROR, __file__, 1, "boom %s", ("!",), None
    )
    record.status = 500
    try:
        raise ValueError("multi\nline")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    token = logs.REQUEST_ID.set("rid-1")
    try:
        line = logs.JsonFormatter().format(record)
    finally:
        logs.REQUEST_ID.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "boom !" and entry["level"] == "ERROR"
    assert entry["request_id"] == "rid-1" and entry["status"] == 500
    assert "Traceback" in entry["exception"] and "multi\nline" in entry["exception"]


def test_configure_is_idempotent_and_tolerates_bad_levels():
    logger = logs.configure("debug")
    assert logger.level == logging.DEBUG
    logs.configure("LOUD")
    assert logger.level == logging.INFO
    ours = [h for h in logger.handlers if getattr(h, "_mnist_json", False)]
    assert len(ours) == 1 and logger.propagate is False
