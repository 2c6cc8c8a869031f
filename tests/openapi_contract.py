"""The contract every answer of the API must keep: a status openapi/predict.yaml documents, a
JSON body of the documented shape, and no internals (stack traces, module or file paths)."""

from __future__ import annotations

from typing import Any

import jsonschema
import requests
import yaml
from repo_paths import OPENAPI, ROOT

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
