"""Property-based and schema-driven fuzzing, bounded in count and time.

* hypothesis, in-process: the handler's request parsing and the payload loaders raise only the
  typed errors (never anything that would become a 500), and the OpenAPI request schema and the
  handler agree (whatever the handler accepts, API Gateway's validator lets through).
* schemathesis (Python API, v4), over HTTP: positive and negative cases generated from
  openapi/predict.yaml against the running local stack; every answer has a documented status
  and schema, no 5xx, no internals; the stack still predicts correctly afterwards.

``FUZZ_PROFILE=ci`` (default) runs ~100 examples per property (about 40 s in all);
``FUZZ_PROFILE=long`` runs 20x as many. Counts go to tmp/outputs/fuzz.json.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_contract import assert_answer, check_documented, check_no_leak, load_openapi
from real_stack import PREFIX, npy_bytes, predict, real_stack
from reliability_run import LONG, PROFILE, write_figures
from repo_paths import OPENAPI
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from mnist_lambda import local_stack
from mnist_serving import payload, request
from mnist_serving.errors import AppError, BadRequest, UnsupportedMediaType

pytestmark = pytest.mark.timeout(600 if LONG else 180)

SCALE = 20 if LONG else 1
HTTP_EXAMPLES = 80 * SCALE
"""Per generation mode (positive, negative): 160 requests in the CI profile."""
UNIT_EXAMPLES = 150 * SCALE

FIGURES: dict[str, Any] = {"profile": PROFILE}


def unit_settings(n: int = UNIT_EXAMPLES) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def count(name: str) -> None:
    FIGURES[name] = FIGURES.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    started = time.perf_counter()
    yield
    FIGURES["seconds"] = round(time.perf_counter() - started, 1)
    write_figures("fuzz", FIGURES)


# --- request parsing ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
keyish = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[a-z./%\\#?~ -]{0,30}\.(npy|npz|csv|csv\.gz|pkl)", fullmatch=True),
    st.sampled_from(["..", ".", "/", "inputs/../x.npy", "a//b.npy", "\x00", "\ud800", "é" * 600]),
)
bucketish = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True),
    st.sampled_from(["127.0.0.1", "xn--abc", "a..b", "sthree-x", "AB", "ab"]),
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"bucket": bucketish, "key": keyish},
        optional={"output_key": keyish, "extra": json_values},
    ),
)

REQUEST_SCHEMA = load_openapi()["components"]["schemas"]["PredictRequest"]
SCHEMA_VALIDATOR = jsonschema.Draft4Validator(REQUEST_SCHEMA)


@unit_settings()
@given(body=bodies, b64=st.booleans(), content_type=st.sampled_from([None, "application/json"]))
def test_parse_event_raises_only_bad_request(body: Any, b64: bool, content_type: Any) -> None:
    count("parse_event_examples")
    text = json.dumps(body)
    event = {
        "headers": {"Content-Type": content_type} if content_type else None,
        "body": base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() if b64 else text,
        "isBase64Encoded": b64,
    }
    try:
        parsed = request.parse_event(event)
    except BadRequest as exc:
        check_no_leak(exc.message, text)
        return
    # the handler accepted it: API Gateway's validator must have let it through too
    assert SCHEMA_VALIDATOR.is_valid(json.loads(text)), text
    assert parsed.bucket == body["bucket"] and parsed.key == body["key"]


@unit_settings()
@given(
    event=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "body": st.one_of(st.none(), st.text(), st.binary(), json_values),
                "isBase64Encoded": json_values,
                "headers": st.one_of(
                    json_values, st.dictionaries(st.text(max_size=20), json_values, max_size=3)
                ),
            },
        ),
    )
)
def test_parse_event_survives_any_event(event: Any) -> None:
    count("raw_event_examples")
    with contextlib.suppress(BadRequest, UnsupportedMediaType):
        request.parse_event(event)


@unit_settings()
@given(
    bucket=st.from_regex(REQUEST_SCHEMA["properties"]["bucket"]["pattern"]),
    key=st.from_regex(REQUEST_SCHEMA["properties"]["key"]["pattern"]),
    returned=st.one_of(st.none(), st.sampled_from(REQUEST_SCHEMA["properties"]["return"]["enum"])),
)
def test_schema_valid_bodies_are_accepted_or_refused_for_a_documented_reason(
    bucket: str, key: str, returned: str | None
) -> None:
    """What the schema lets through, the handler accepts unless a rule JSON Schema cannot say
    (dot segments, IP-address buckets, reserved prefixes, 1024 UTF-8 bytes) applies."""
    count("schema_agreement_examples")
    body = {"bucket": bucket, "key": key, **({} if returned is None else {"return": returned})}
    if not SCHEMA_VALIDATOR.is_valid(body):
        return
    try:
        request.parse_event({"body": json.dumps(body)})
    except BadRequest as exc:
        reasons = ("'.' or '..'", "not a valid S3 bucket name", "bytes long", "Unicode")
        assert any(r in exc.message for r in reasons), exc.message


# --- payload loaders ---------------------------------------------------------------------------


def _valid_objects(rows: np.ndarray) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez_compressed(buf, X=rows)
    csv = "\n".join(",".join(map(str, r)) for r in rows).encode()
    return {
        ".npy": npy_bytes(rows),
        ".npz": buf.getvalue(),
        ".csv": csv,
        ".csv.gz": gzip.compress(csv),
    }


FORMATS = st.sampled_from([".npy", ".npz", ".csv", ".csv.gz"])
MAX_BYTES = 1 << 20


@unit_settings()
@given(fmt=FORMATS, data=st.binary(max_size=4096))
def test_loaders_on_arbitrary_bytes_raise_only_typed_errors(fmt: str, data: bytes) -> None:
    count("loader_random_bytes_examples")
    try:
        pixels = payload.load_pixels(fmt, data, max_bytes=MAX_BYTES)
    except AppError as exc:
        assert exc.status in (413, 415, 422), exc
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.shape[1] == 784


@unit_settings()
@given(
    fmt=FORMATS,
    n=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    edits=st.lists(
        st.tuples(st.one_of(st.integers(0, 200), st.integers(0, 10**6)), st.integers(0, 255)),
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_loaders_on_corrupted_objects(fmt: str, n: int, seed: int, edits, cut) -> None:
    """Valid objects with bytes flipped or cut: decoded, or refused with a typed error."""
    count("loader_corruption_examples")
    rows = np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)
    data = bytearray(_valid_objects(rows)[fmt])
    for where, value in edits:
        data[where % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        pixels = payload.load_pixels(fmt, bytes(data), max_bytes=MAX_BYTES)
    except AppError as exc:
        assert exc.status in (413, 415, 422), exc
        return
    assert pixels.dtype == np.uint8 and pixels.shape[1] == 784


def _npy_with(offset: int, value: int) -> bytes:
    data = bytearray(npy_bytes(np.zeros((2, 784), dtype=np.uint8)))
    data[offset] = value
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [_npy_with(10, 0), _npy_with(26, ord("B"))],
    ids=["header-tokenize-error", "header-type-error"],
)
def test_npy_headers_found_by_fuzzing_are_415(data: bytes) -> None:
    """Found by the corruption property: numpy's header parser raised TokenError/TypeError,
    which the handler answered as a 500."""
    with pytest.raises(AppError) as caught:
        payload.load_pixels(".npy", data, max_bytes=MAX_BYTES)
    assert caught.value.status == 415


@unit_settings(max(30, UNIT_EXAMPLES // 3))
@given(fmt=FORMATS, n=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_loaders_round_trip_valid_pixels(fmt: str, n: int, seed: int) -> None:
    count("loader_round_trip_examples")
    rows = np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)
    pixels = payload.load_pixels(fmt, _valid_objects(rows)[fmt], max_bytes=MAX_BYTES)
    np.testing.assert_array_equal(pixels, rows)


# --- schemathesis against the running stack --------------------------------------------------


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:20], dtype=np.uint8)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, small_model_path: Path, rows
) -> Iterator[local_stack.StackInfo]:
    with real_stack(tmp_path_factory.mktemp("fuzz-stack"), small_model_path, instances=2) as info:
        client = local_stack.s3_client(info)
        client.put_object(Bucket=info.bucket, Key=PREFIX + "digits.npy", Body=npy_bytes(rows))
        yield info


@schemathesis.check
def json_error_without_internals(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer is JSON of its documented schema, with no stack trace or internal path."""
    sent = case.body if isinstance(case.body, str) else json.dumps(case.body, default=str)
    check_no_leak(response.text, sent)
    if response.status_code != 200:
        check_documented(response.status_code, json.loads(response.text))
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    json_error_without_internals,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_against_the_running_stack(stack, rows, small_model_path, mode) -> None:
    schema = schemathesis.openapi.from_path(OPENAPI)
    operation = schema["/predict"]["POST"]
    base_url = stack.api_url
    session = requests.Session()
    statuses: dict[int, int] = {}
    checks = [*CHECKS, negative_data_rejection] if mode == GenerationMode.NEGATIVE else CHECKS
    # Some cases use the stack's own bucket and allowed prefix, so positive cases also reach S3.
    allowed = st.builds(
        lambda key, returned: {"bucket": stack.bucket, "key": PREFIX + key, **returned},
        st.from_regex(r"[a-z0-9/._-]{1,30}\.(npy|npz|csv|csv\.gz)", fullmatch=True),
        st.sampled_from([{}, {"return": "labels"}, {"return": "probabilities"}]),
    )

    @settings(
        max_examples=HTTP_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), own=st.one_of(st.none(), allowed))
    def run(case: Any, own: Any) -> None:
        if own is not None and mode == GenerationMode.POSITIVE:
            case.body = own
        response = case.call(base_url=base_url, session=session, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks)

    started = time.perf_counter()
    run()
    FIGURES[f"schemathesis_{mode.value}"] = {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(time.perf_counter() - started, 1),
    }
    assert not any(s >= 500 for s in statuses)
    # afterwards the stack still answers a valid request correctly
    from mnist_serving.model import load

    resp = predict(stack, PREFIX + "digits.npy")
    assert assert_answer(resp, 200) == load(small_model_path).predict(rows).tolist()
