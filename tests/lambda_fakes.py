"""Lambda and API Gateway stand-ins: a context object, proxy events, and the error shape check."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from repo_paths import EVENTS_DIR


@dataclass
class FakeLambdaContext:
    """The parts of Lambda's context object the handler (and most code) uses."""

    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    function_name: str = "mnist-predict"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mnist-predict"
    memory_limit_in_mb: int = 1024
    log_group_name: str = "/aws/lambda/mnist-predict"
    log_stream_name: str = "2026/11/27/[$LATEST]0123456789abcdef"
    remaining_ms: list[int] = field(default_factory=lambda: [25_000])
    """Successive answers of get_remaining_time_in_millis; the last one repeats."""

    def get_remaining_time_in_millis(self) -> int:
        if len(self.remaining_ms) > 1:
            return self.remaining_ms.pop(0)
        return self.remaining_ms[0]


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json``."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def api_event(body: Any, *, base64_body: bool = False, raw: bool = False) -> dict[str, Any]:
    """An API Gateway REST proxy event (from events/predict_npy.json) with another body.

    ``body`` is JSON-encoded unless ``raw`` (then it is used as the body string as-is).
    """
    event = copy.deepcopy(load_event("predict_npy"))
    text = body if raw else json.dumps(body)
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    event["body"] = text
    event["isBase64Encoded"] = base64_body
    return event


def event_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded JSON body of an event."""
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return json.loads(body)


_PATH_RE = re.compile(r"(?:^|[\s'\"(=])/(?:[\w.-]+/)+[\w.-]*")


def assert_error(response: Mapping[str, Any], status: int, code: str) -> dict[str, Any]:
    """Check an error response's status and documented shape; return its error object."""
    assert response["statusCode"] == status, response
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert set(body) == {"error", "request_id"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response["headers"]["X-Request-Id"]
    assert "Traceback" not in response["body"]
    assert not _PATH_RE.search(body["error"]["message"]), body["error"]["message"]
    return body["error"]
