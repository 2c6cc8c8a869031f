"""Shared by the reliability tests: the real function behind the local stack, and the checks
every answer must pass (a documented status, a JSON body of the documented shape, no internals).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import requests
import yaml

from mnist_lambda import local_stack
from mnist_lambda.client import Client

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT / "openapi" / "predict.yaml"
OUTPUTS = Path(os.environ.get("RELIABILITY_OUTPUTS", ROOT / "tmp" / "outputs"))
"""Where the tests write their figures (JSON), for docs/reliability.md."""

PROFILE = os.environ.get("FUZZ_PROFILE", "ci").lower()
LONG = PROFILE == "long"

PREFIX = "inputs/"
"""The stacks here allow only this prefix of their bucket, as the template's DataKeyPrefix."""

LEAK_MARKERS = (
    "Traceback",
    'File "',
    "site-packages",
    "lambda_predict",
    "mnist_serving",
    "mnist_lambda",
    ".py",
    str(ROOT),
    "/tmp/",
    "/home/",
    "/var/task",
    "errorType",
    "stackTrace",
)
"""Text that would mean a stack trace, module or file path reached the caller."""


def load_openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


def documented_statuses() -> set[int]:
    operation = load_openapi()["paths"]["/predict"]["post"]
    return {int(code) for code in operation["responses"]}


def _response_validator(status: int) -> jsonschema.Draft4Validator:
    spec = load_openapi()
    response = spec["paths"]["/predict"]["post"]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return jsonschema.Draft4Validator({"components": spec["components"], **schema})


_VALIDATORS: dict[int, jsonschema.Draft4Validator] = {}


def check_documented(status: int, body: Any) -> None:
    """The status is in openapi/predict.yaml and the JSON body matches its schema."""
    assert status in documented_statuses(), f"undocumented status {status}: {body!r}"
    if status not in _VALIDATORS:
        _VALIDATORS[status] = _response_validator(status)
    errors = [e.message for e in _VALIDATORS[status].iter_errors(body)]
    assert not errors, f"{status} body does not match its schema: {errors}: {body!r}"


def check_no_leak(text: str, sent: str = "") -> None:
    """No stack trace or internal path in ``text`` (unless the caller sent it themselves)."""
    for marker in LEAK_MARKERS:
        if marker in text and marker not in sent:
            raise AssertionError(f"response leaks {marker!r}: {text[:500]!r}")


def assert_answer(
    resp: requests.Response,
    status: int,
    *,
    code: str | None = None,
    gateway: str | None = None,
    sent: str = "",
) -> dict[str, Any] | list[Any]:
    """``resp`` has ``status``, a documented JSON body, the function's error ``code`` or API
    Gateway's own ``gateway`` message, and no internals."""
    assert resp.status_code == status, f"{resp.status_code} != {status}: {resp.text[:500]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    check_documented(status, body)
    check_no_leak(resp.text, sent)
    if code is not None:
        assert body["error"]["code"] == code, body
        assert body["error"]["message"]
        assert body["request_id"] == resp.headers["X-Request-Id"]
    if gateway is not None:
        assert body == {"message": gateway}, body
    return body


def npy_bytes(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


@contextmanager
def real_stack(
    state_dir: Path,
    model_path: Path,
    *,
    instances: int = 1,
    extra_args: Sequence[str] = (),
    bucket: str = "mnist-lambda-local",
    template: Path | None = None,
) -> Iterator[local_stack.StackInfo]:
    """The real lambda_app + template_no_auth.yaml on the local stack with ``DataKeyPrefix``
    ``inputs/``; stopped (and every port freed) on exit.

    These tests measure the function, so the stage throttle (10 requests/s in the template,
    tested in test_api_front.py) is raised out of their way.
    """
    throttle = ["-P", "ThrottleRateLimit=10000", "-P", "ThrottleBurstLimit=5000"]
    info = local_stack.start(
        state_dir,
        model_path=model_path,
        instances=instances,
        bucket=bucket,
        template=template,
        extra_args=["-P", f"DataKeyPrefix={PREFIX}", *throttle, *extra_args],
    )
    try:
        yield info
    finally:
        local_stack.stop(state_dir)


def predict(info: local_stack.StackInfo, key: str, timeout: float = 60) -> requests.Response:
    """One attempt through the project's client (no retries: the tests judge each status)."""
    with Client(info.predict_url, max_attempts=1, timeout_s=timeout) as client:
        return client.post({"bucket": info.bucket, "key": key}).response


def write_figures(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``tmp/outputs/<name>.json`` (atomically) and print it."""
    from mnist_lambda.record import atomic_write_json

    path = atomic_write_json(OUTPUTS / f"{name}.json", data)
    print(f"\n{name}: {json.dumps(data, indent=1)}\n-> {path}")
    return path
