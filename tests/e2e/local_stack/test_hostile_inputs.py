"""Hand-picked hostile requests against the running local stack (real handler, real template,
API front validating with openapi/predict.yaml): each gets its documented status and a clean
JSON answer, no pickle is ever loaded, and the stack still predicts correctly afterwards."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from openapi_contract import assert_answer
from real_stack import PREFIX, npy_bytes, predict, real_stack

from mnist_lambda import local_stack

pytestmark = pytest.mark.timeout(180)

MAX_OBJECT_BYTES = 200_000
"""The stack's MaxObjectBytes here, so "too large" needs only a small object."""


class Marker:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("marker") / "pickle-was-loaded"


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:50], dtype=np.uint8)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, small_model_path: Path, rows, marker: Path
) -> Iterator[local_stack.StackInfo]:
    import joblib

    state = tmp_path_factory.mktemp("hostile-stack")
    with real_stack(
        state,
        small_model_path,
        instances=2,
        extra_args=["-P", f"MaxObjectBytes={MAX_OBJECT_BYTES}"],
    ) as info:
        evil = pickle.dumps(Marker(marker))
        joblib_buf = io.BytesIO()
        joblib.dump(Marker(marker), joblib_buf)
        joblib_z = io.BytesIO()
        joblib.dump(Marker(marker), joblib_z, compress=3)
        npz_obj = io.BytesIO()
        np.savez(npz_obj, X=np.array([Marker(marker)], dtype=object))
        nan = rows[:3].astype(np.float64)
        nan[1, 5] = np.nan
        negative = rows[:3].astype(np.int16)
        negative[0, 0] = -1
        over = rows[:3].astype(np.int16)
        over[2, 700] = 256
        csv_text = "\n".join(",".join(map(str, r)) for r in rows[:5]).encode()
        bomb = gzip.compress(b"0," * (MAX_OBJECT_BYTES * 4))
        good_npz = io.BytesIO()
        np.savez_compressed(good_npz, X=rows)
        zip_slip = io.BytesIO()
        with zipfile.ZipFile(zip_slip, "w") as zf:
            zf.writestr("../../evil.npy", npy_bytes(rows[:2]))
        bad_header = bytearray(npy_bytes(rows[:2]))
        bad_header[10] = 0  # numpy's header parser raised TokenError here (a 500, now 415)
        odd_header = bytearray(npy_bytes(rows[:2]))
        odd_header[26] = ord("B")  # ... and TypeError here
        objects = {
            "digits.npy": npy_bytes(rows),
            "bad-header.npy": bytes(bad_header),
            "odd-header.npy": bytes(odd_header),
            "digits.npz": good_npz.getvalue(),
            "digits.csv": csv_text,
            "digits.csv.gz": gzip.compress(csv_text),
            "evil.pkl": evil,
            "evil.pickle": evil,
            "pickle-named.npy": evil,
            "pickle-named.csv": evil,
            "model.joblib": joblib_buf.getvalue(),
            "joblib-named.npz": joblib_buf.getvalue(),
            "joblib-compressed.npy": joblib_z.getvalue(),
            "object-array.npy": npy_bytes(
                np.array([Marker(marker)], dtype=object), allow_pickle=True
            ),
            "object-array.npz": npz_obj.getvalue(),
            "wrong-columns.npy": npy_bytes(rows[:, :783]),
            "images-3d.npy": npy_bytes(rows.reshape(-1, 28, 28)),
            "flat-1d.npy": npy_bytes(rows[0]),
            "nan.npy": npy_bytes(nan),
            "negative.npy": npy_bytes(negative),
            "over-255.npy": npy_bytes(over),
            "fractional.npy": npy_bytes(rows[:2].astype(np.float32) + 0.5),
            "zero-rows.npy": npy_bytes(np.zeros((0, 784), dtype=np.uint8)),
            "too-large.npy": npy_bytes(np.zeros((300, 784), dtype=np.uint8)),
            "gzip-bomb.csv.gz": bomb,
            "truncated.npy": npy_bytes(rows)[:1000],
            "text.csv": b"a,b,c\n1,2,x\n",
            "empty.npy": b"",
            "strings.npy": npy_bytes(np.array([["x"] * 784])),
            "zip-slip.npz": zip_slip.getvalue(),
            "digits.txt": csv_text,
        }
        client = local_stack.s3_client(info)
        for name, data in objects.items():
            client.put_object(Bucket=info.bucket, Key=PREFIX + name, Body=data)
        client.put_object(Bucket=info.bucket, Key="secret/digits.npy", Body=npy_bytes(rows))
        yield info
    assert not marker.exists(), "a pickle sent by a caller was loaded"


def post_raw(
    info: local_stack.StackInfo, body: bytes, content_type: str | None = "application/json"
) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(info.predict_url, data=body, headers=headers, timeout=60)


def body_of(info: local_stack.StackInfo, **fields: Any) -> bytes:
    return json.dumps({"bucket": info.bucket, "key": PREFIX + "digits.npy", **fields}).encode()


# --- the request body: refused by API Gateway's validator before the function runs -----------

GATEWAY_REFUSED = {
    "not-json": b"bucket=x&key=y",
    "truncated-json": b'{"bucket": "mnist-lambda-local", "key": "inputs/digits.npy"',
    "empty-body": b"",
    "json-array": b'["mnist-lambda-local", "inputs/digits.npy"]',
    "json-string": b'"inputs/digits.npy"',
    "json-number": b"42",
    "json-null": b"null",
    "json-true": b"true",
    "empty-object": b"{}",
    "missing-key": b'{"bucket": "mnist-lambda-local"}',
    "missing-bucket": b'{"key": "inputs/digits.npy"}',
    "extra-field": b'{"bucket": "mnist-lambda-local", "key": "inputs/digits.npy", "admin": true}',
    "bucket-number": b'{"bucket": 1, "key": "inputs/digits.npy"}',
    "key-object": b'{"bucket": "mnist-lambda-local", "key": {"$ne": ""}}',
    "key-array": b'{"bucket": "mnist-lambda-local", "key": ["inputs/digits.npy"]}',
    "key-null": b'{"bucket": "mnist-lambda-local", "key": null}',
    "key-empty": b'{"bucket": "mnist-lambda-local", "key": ""}',
    "key-huge": json.dumps({"bucket": "mnist-lambda-local", "key": "k" * 5000}).encode(),
    "bucket-huge": json.dumps({"bucket": "b" * 100_000, "key": "inputs/x.npy"}).encode(),
    "body-1mb": json.dumps({"bucket": "mnist-lambda-local", "key": "x" * 1_000_000}).encode(),
    "non-utf8": b'{"bucket": "mnist-lambda-local", "key": "inputs/\xff\xfe.npy"}',
    "absolute-key": b'{"bucket": "mnist-lambda-local", "key": "/etc/passwd.npy"}',
    "key-nul": b'{"bucket": "mnist-lambda-local", "key": "inputs/digits.npy\\u0000.csv"}',
    "key-newline": b'{"bucket": "mnist-lambda-local", "key": "inputs/a\\nb.npy"}',
    "key-c1-control": b'{"bucket": "mnist-lambda-local", "key": "inputs/a\\u0085.npy"}',
    "bucket-uppercase": b'{"bucket": "Mnist-Lambda-Local", "key": "inputs/digits.npy"}',
    "bucket-with-path": b'{"bucket": "mnist-lambda-local/inputs", "key": "digits.npy"}',
    "bucket-url": b'{"bucket": "http://169.254.169.254", "key": "inputs/digits.npy"}',
    "deeply-nested": b'{"bucket": ' + b"[" * 100_000 + b"]" * 100_000 + b', "key": "k"}',
    "duplicate-keys-bad-last": b'{"bucket": "mnist-lambda-local", "key": "inputs/digits.npy", '
    b'"key": 5}',
    # "return" is an enum in the schema: any other value never reaches the function (which
    # refuses it as well, with a 400 naming the allowed values: tests/handler)
    **{
        f"return-{name}": json.dumps(
            {"bucket": "mnist-lambda-local", "key": "inputs/digits.npy", "return": value}
        ).encode()
        for name, value in {
            "unknown": "proba",
            "uppercase": "Probabilities",
            "padded": " probabilities",
            "empty": "",
            "number": 1,
            "true": True,
            "null": None,
            "array": ["probabilities"],
            "object": {"probabilities": True},
            "huge": "probabilities" * 80_000,  # ~1 MB, under API Gateway's 10 MB
        }.items()
    },
}


@pytest.mark.parametrize("body", GATEWAY_REFUSED.values(), ids=GATEWAY_REFUSED.keys())
def test_malformed_body_is_refused_by_the_api(stack, body: bytes) -> None:
    resp = post_raw(stack, body)
    assert_answer(resp, 400, gateway="Invalid request body")
    assert "X-Lambda-Emulator-Instance" not in resp.headers  # the function never ran


def test_body_over_api_gateway_limit_is_413(stack) -> None:
    resp = post_raw(stack, b'{"bucket": "' + b"a" * (10 * 1024 * 1024 + 1) + b'"}')
    assert_answer(resp, 413, gateway="Request Too Long")


# --- keys and buckets that pass the schema: the function refuses them ------------------------

FUNCTION_REFUSED: dict[str, tuple[dict[str, str], int, str]] = {
    "dot-dot-segment": ({"key": "inputs/../secret/digits.npy"}, 400, "bad_request"),
    "dot-segment": ({"key": "inputs/./digits.npy"}, 400, "bad_request"),
    "fragment-then-dot-dot": ({"key": "inputs/a#/../digits.npy"}, 400, "bad_request"),
    "lone-surrogate": ({"key": "inputs/\ud800.npy"}, 400, "bad_request"),
    "ip-address-bucket": ({"bucket": "127.0.0.1", "key": "inputs/digits.npy"}, 400, "bad_request"),
    "bucket-dot-dot": ({"bucket": "mnist..local", "key": "inputs/digits.npy"}, 400, "bad_request"),
    "key-1025-utf8-bytes": ({"key": "inputs/" + "é" * 510 + ".npy"}, 400, "bad_request"),
    "bucket-not-allowed": ({"bucket": "someone-elses-bucket"}, 403, "forbidden"),
    "bucket-metadata-host": ({"bucket": "169.254.169.254.nip.io"}, 403, "forbidden"),
    "key-outside-prefix": ({"key": "secret/digits.npy"}, 403, "forbidden"),
    "prefix-via-backslash": ({"key": "inputs\\..\\secret\\digits.npy"}, 403, "forbidden"),
    "encoded-dot-dot": ({"key": "inputs/%2e%2e/secret/digits.npy"}, 404, "not_found"),
    "double-encoded": ({"key": "inputs/%252e%252e/secret/digits.npy"}, 404, "not_found"),
    "backslash-dot-dot": ({"key": "inputs/..\\secret\\digits.npy"}, 404, "not_found"),
    "query-in-key": ({"key": "inputs/digits.npy?versionId=1&x=.npy"}, 404, "not_found"),
    "version-id-suffix": ({"key": "inputs/digits.npy?versionId=null"}, 415, "unsupported_format"),
    "fragment-suffix": ({"key": "inputs/digits.npy#.csv"}, 404, "not_found"),
    "missing-object": ({"key": "inputs/nothing-here.npy"}, 404, "not_found"),
    "pickle-suffix": ({"key": "inputs/evil.pkl"}, 415, "unsupported_format"),
    "pickle-suffix-2": ({"key": "inputs/evil.pickle"}, 415, "unsupported_format"),
    "pickle-named-npy": ({"key": "inputs/pickle-named.npy"}, 415, "unsupported_format"),
    "pickle-named-csv": ({"key": "inputs/pickle-named.csv"}, 415, "unsupported_format"),
    "joblib-suffix": ({"key": "inputs/model.joblib"}, 415, "unsupported_format"),
    "joblib-named-npz": ({"key": "inputs/joblib-named.npz"}, 415, "unsupported_format"),
    "joblib-compressed-npy": ({"key": "inputs/joblib-compressed.npy"}, 415, "unsupported_format"),
    "npy-needs-allow-pickle": ({"key": "inputs/object-array.npy"}, 415, "unsupported_format"),
    "npz-needs-allow-pickle": ({"key": "inputs/object-array.npz"}, 415, "unsupported_format"),
    "truncated-npy": ({"key": "inputs/truncated.npy"}, 415, "unsupported_format"),
    "npy-header-tokenize-error": ({"key": "inputs/bad-header.npy"}, 415, "unsupported_format"),
    "npy-header-type-error": ({"key": "inputs/odd-header.npy"}, 415, "unsupported_format"),
    "empty-object": ({"key": "inputs/empty.npy"}, 415, "unsupported_format"),
    "unknown-suffix": ({"key": "inputs/digits.txt"}, 415, "unsupported_format"),
    "wrong-columns": ({"key": "inputs/wrong-columns.npy"}, 422, "invalid_input"),
    "images-not-flattened": ({"key": "inputs/images-3d.npy"}, 422, "invalid_input"),
    "one-dimensional": ({"key": "inputs/flat-1d.npy"}, 422, "invalid_input"),
    "nan": ({"key": "inputs/nan.npy"}, 422, "invalid_input"),
    "negative": ({"key": "inputs/negative.npy"}, 422, "invalid_input"),
    "over-255": ({"key": "inputs/over-255.npy"}, 422, "invalid_input"),
    "fractional": ({"key": "inputs/fractional.npy"}, 422, "invalid_input"),
    "zero-rows": ({"key": "inputs/zero-rows.npy"}, 422, "invalid_input"),
    "strings-array": ({"key": "inputs/strings.npy"}, 422, "invalid_input"),
    "csv-not-numbers": ({"key": "inputs/text.csv"}, 422, "invalid_input"),
    "over-size-limit": ({"key": "inputs/too-large.npy"}, 413, "object_too_large"),
    "gzip-bomb": ({"key": "inputs/gzip-bomb.csv.gz"}, 413, "object_too_large"),
}


@pytest.mark.parametrize(
    ("fields", "status", "code"), FUNCTION_REFUSED.values(), ids=FUNCTION_REFUSED.keys()
)
def test_hostile_request_gets_its_documented_error(
    stack, fields: dict[str, str], status: int, code: str
) -> None:
    body = body_of(stack, **fields)
    resp = post_raw(stack, body)
    assert_answer(resp, status, code=code, sent=body.decode())
    assert resp.headers["X-Lambda-Emulator-Instance"]  # the function answered


# --- the HTTP layer ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_wrong_method_is_api_gateways_403(stack, method: str) -> None:
    resp = requests.request(method, stack.predict_url, timeout=30)
    assert resp.status_code == 403
    if method != "HEAD":
        assert_answer(resp, 403, gateway="Missing Authentication Token")


@pytest.mark.parametrize(
    "path",
    ["/dev/admin", "/dev/predict/..", "/dev/predict/x", "/prod/predict", "/dev/%2e%2e/predict",
     "/dev//predict", "/.env", "/dev/predict%00"],
)  # fmt: skip
def test_unknown_route_is_api_gateways_403(stack, path: str) -> None:
    resp = requests.post(
        f"http://127.0.0.1:{stack.port}{path}", json={"bucket": "b", "key": "k"}, timeout=30
    )
    assert_answer(resp, 403, gateway="Missing Authentication Token")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream",
     "multipart/form-data; boundary=x", "application/xml"],
)  # fmt: skip
def test_wrong_content_type_is_415(stack, content_type: str) -> None:
    resp = post_raw(stack, body_of(stack, key="inputs/digits.npy"), content_type)
    assert_answer(resp, 415, code="unsupported_media_type")


def test_json_content_type_variants_are_accepted(stack, expected) -> None:
    for content_type in (None, "application/json; charset=utf-8", "APPLICATION/JSON"):
        resp = post_raw(stack, body_of(stack, key="inputs/digits.npy"), content_type)
        assert resp.status_code == 200, (content_type, resp.text)
        assert resp.json() == expected


# --- "return": "probabilities" -----------------------------------------------------------------


def test_probabilities_answer_through_the_api(stack, expected, small_model_path) -> None:
    from mnist_serving.model import load

    body = body_of(stack, **{"return": "probabilities"})
    resp = post_raw(stack, body)
    answer = assert_answer(resp, 200, sent=body.decode())
    assert list(answer) == ["labels", "probabilities", "classes"]
    assert answer["labels"] == expected and answer["classes"] == list(range(10))
    assert resp.headers["X-Row-Count"] == str(len(expected))
    p = np.asarray(answer["probabilities"])
    assert p.shape == (len(expected), 10) and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=10 * 0.5e-4)  # rounded to 4 decimals
    np.testing.assert_array_equal(p[np.arange(len(p)), answer["labels"]], p.max(axis=1))
    model = load(small_model_path)
    assert np.abs(p - model.predict_proba(model_rows(stack))).max() <= 0.5e-4 + 1e-6
    labels = assert_answer(post_raw(stack, body_of(stack, **{"return": "labels"})), 200)
    assert labels == expected


def model_rows(info: local_stack.StackInfo) -> np.ndarray:
    """The rows of inputs/digits.npy, read back from the stack's S3."""
    raw = local_stack.s3_client(info).get_object(Bucket=info.bucket, Key=PREFIX + "digits.npy")
    return np.load(io.BytesIO(raw["Body"].read()), allow_pickle=False)


@pytest.mark.parametrize(
    ("output_key", "status", "code"),
    [("predictions/hostile/p.npy", 400, "bad_request"),  # .npy cannot hold probabilities
     ("predictions/hostile/p.csv", 400, "bad_request"),
     ("inputs/overwrite.npz", 403, "forbidden"),
     ("predictions/hostile/../../inputs/x.npz", 400, "bad_request")],
)  # fmt: skip
def test_probabilities_with_a_bad_output_key(stack, output_key, status, code) -> None:
    body = body_of(stack, output_key=output_key, **{"return": "probabilities"})
    assert_answer(post_raw(stack, body), status, code=code, sent=body.decode())


def test_probabilities_written_as_npz(stack, expected) -> None:
    key = "predictions/hostile/p.npz"
    body = body_of(stack, output_key=key, **{"return": "probabilities"})
    where = assert_answer(post_raw(stack, body), 200, sent=body.decode())
    assert where == {"bucket": stack.bucket, "key": key, "rows": len(expected), "format": "npz"}
    raw = local_stack.s3_client(stack).get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        assert data["labels"].tolist() == expected
        assert data["probabilities"].shape == (len(expected), 10)
        np.testing.assert_allclose(data["probabilities"].sum(axis=1), 1.0, atol=1e-6)


# --- afterwards: still correct ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits.npy", "digits.npz", "digits.csv", "digits.csv.gz"])
def test_valid_requests_still_answer_correctly(stack, expected, name: str) -> None:
    resp = predict(stack, PREFIX + name)
    body = assert_answer(resp, 200)
    assert body == expected[: len(body)] and len(body) in (5, len(expected))


def test_zip_slip_member_name_is_harmless(stack, expected) -> None:
    """A .npz member named ../../evil.npy: read from memory, never extracted to disk."""
    resp = predict(stack, PREFIX + "zip-slip.npz")
    assert assert_answer(resp, 200) == expected[:2]


def test_no_pickle_was_ever_loaded(stack, marker: Path) -> None:
    assert not marker.exists()
