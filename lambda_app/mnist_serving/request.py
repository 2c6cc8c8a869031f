"""Parse an API Gateway REST (v1 proxy) event into a validated :class:`PredictRequest`.

The body is JSON ``{"bucket": str, "key": str}`` (base64-encoded when ``isBase64Encoded``).
Fields are declared once in :data:`FIELDS`; an optional field such as ``output_key`` is added
there (with a default in :class:`PredictRequest`) without touching the parsing code. A JSON name
that is a Python keyword (``return``) is the attribute of that name with a trailing ``_``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import keyword
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from mnist_serving.errors import BadRequest, UnsupportedMediaType

MAX_BODY_BYTES = 16 * 1024
"""A valid body is well under 2 KB; anything much larger is not a request for this endpoint."""

MAX_KEY_BYTES = 1024
"""S3's limit on a key's UTF-8 length."""

RETURN_VALUES: tuple[str, ...] = ("labels", "probabilities")
"""What ``"return"`` may ask for; the first is the default (the bare JSON array of labels)."""

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-")


@dataclass(frozen=True)
class PredictRequest:
    """What a caller asks for: predict every row of ``s3://bucket/key``."""

    bucket: str
    key: str
    output_key: str | None = None
    """Write the labels to ``s3://bucket/output_key`` and answer only where they are."""
    return_: str = RETURN_VALUES[0]
    """``"return"``: ``"labels"`` or ``"probabilities"`` (labels, probabilities and classes)."""

    @property
    def probabilities(self) -> bool:
        return self.return_ == "probabilities"


def validate_bucket(value: Any) -> str:
    """Return ``value`` if it is a valid general-purpose S3 bucket name, else raise 400."""
    if not isinstance(value, str):
        raise BadRequest(f"'bucket' must be a string, got {_json_type(value)}")
    if not _BUCKET_RE.fullmatch(value):
        raise BadRequest(
            "'bucket' is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    if ".." in value or value.startswith(_RESERVED_BUCKET_PREFIXES) or _is_ip_address(value):
        raise BadRequest("'bucket' is not a valid S3 bucket name")
    return value


def validate_key(value: Any, field: str = "key") -> str:
    """Return ``value`` if it is a safe S3 object key, else raise 400.

    Refused: empty keys, keys over 1024 UTF-8 bytes, control characters, a leading ``/`` and
    ``.``/``..`` segments (an HTTP layer may normalise them into a different object).
    """
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be a string, got {_json_type(value)}")
    if not value:
        raise BadRequest(f"'{field}' must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"'{field}' is not valid Unicode text") from None
    if size > MAX_KEY_BYTES:
        raise BadRequest(f"'{field}' is {size} bytes long; S3 keys are at most {MAX_KEY_BYTES}")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise BadRequest(f"'{field}' must not contain control characters")
    if value.startswith("/"):
        raise BadRequest(f"'{field}' must not start with '/' (S3 keys are relative)")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise BadRequest(f"'{field}' must not contain '.' or '..' path segments")
    return value


def validate_return(value: Any) -> str:
    """Return ``value`` if it is one of :data:`RETURN_VALUES`, else raise 400 (the value itself
    is not echoed: it may be anything up to the body's size)."""
    allowed = ", ".join(map(repr, RETURN_VALUES))
    if not isinstance(value, str):
        raise BadRequest(f"'return' must be a string, one of {allowed}; got {_json_type(value)}")
    if value not in RETURN_VALUES:
        raise BadRequest(f"'return' must be one of {allowed}")
    return value


FIELDS: Mapping[str, Callable[[Any], Any]] = {
    "bucket": validate_bucket,
    "key": validate_key,
    "output_key": lambda value: validate_key(value, "output_key"),
    "return": validate_return,
}
"""Body fields: name -> validator. Fields without a default in PredictRequest are required."""


def parse_event(event: Any) -> PredictRequest:
    """Validate an API Gateway proxy event and return the request it carries (or raise 400)."""
    if not isinstance(event, Mapping):
        raise BadRequest("the event is not an API Gateway proxy event")
    _check_content_type(event.get("headers"))
    data = _parse_body(event.get("body"), bool(event.get("isBase64Encoded")))
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown field(s): {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(map(repr, FIELDS))}"
        )
    required = [name for name in FIELDS if name not in _OPTIONAL_FIELDS]
    missing = [name for name in required if name not in data]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(map(repr, missing))}")
    values = {_attribute(name): FIELDS[name](value) for name, value in data.items()}
    return PredictRequest(**values)


def _check_content_type(headers: Any) -> None:
    """Refuse a body declared as anything but JSON (none declared is taken as JSON).

    API Gateway validates a body against the schema of its Content-Type and lets a type with no
    schema through unchecked; refusing those here closes that way around the validator.
    """
    if not isinstance(headers, Mapping):
        return
    value = next((v for k, v in headers.items() if str(k).lower() == "content-type"), None)
    media = str(value or "").split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"the request body must be JSON (Content-Type: application/json), not {media[:60]!r}"
        )


def _parse_body(body: Any, is_base64: bool) -> dict[str, Any]:
    if body is None or body == "":
        raise BadRequest('empty body; send JSON {"bucket": "...", "key": "..."}')
    if not isinstance(body, str):
        raise BadRequest("the body must be a string of JSON")
    if len(body) > MAX_BODY_BYTES * (2 if is_base64 else 1):
        raise BadRequest(f"the body is over {MAX_BODY_BYTES} bytes")
    raw: str | bytes = body
    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the body is flagged base64 but is not valid base64") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {_json_type(data)}")
    return data


def _attribute(name: str) -> str:
    """The PredictRequest attribute of a body field (``return`` -> ``return_``)."""
    return f"{name}_" if keyword.iskeyword(name) else name


def _fields_with_defaults() -> frozenset[str]:
    """The optional body fields (by their JSON names)."""
    optional = {
        f.name
        for f in fields(PredictRequest)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    return frozenset(name for name in FIELDS if _attribute(name) in optional)


_OPTIONAL_FIELDS = _fields_with_defaults()


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
