"""Typed errors of the prediction endpoint: one class per HTTP status a client can see.

Raise a subclass anywhere in the request path; the handler turns it into a response with
:func:`mnist_serving.responses.error_response`. Messages are shown to the caller, so they say what
is wrong with the request and never carry file paths or stack traces.
"""

from __future__ import annotations


class AppError(Exception):
    """Base class: an error with an HTTP status, a stable code and a caller-facing message."""

    status: int = 500
    code: str = "internal_error"
    default_message: str = "internal error; quote the request id when reporting it"

    def __init_subclass__(cls, *, status: int, code: str, message: str) -> None:
        cls.status, cls.code, cls.default_message = status, code, message

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class BadRequest(AppError, status=400, code="bad_request", message="malformed request"):
    """400: the request body or its fields are malformed."""


class Forbidden(AppError, status=403, code="forbidden", message="access denied"):
    """403: the bucket/prefix is not allow-listed, or S3 denied access."""


class NotFound(AppError, status=404, code="not_found", message="object not found"):
    """404: the object (or its bucket) does not exist."""


class ObjectTooLarge(AppError, status=413, code="object_too_large", message="object too large"):
    """413: the object (or its decompressed content) is over MAX_OBJECT_BYTES."""


class ResponseTooLarge(
    AppError,
    status=413,
    code="response_too_large",
    message="the answer is over Lambda's 6 MB response limit: send fewer rows per request, or "
    "write the predictions to S3 with 'output_key'",
):
    """413: the answer (probabilities of many rows) would be over Lambda's response limit."""


class UnsupportedFormat(
    AppError, status=415, code="unsupported_format", message="unsupported object format"
):
    """415: the object's format is unknown, does not match its suffix, or is unsafe (pickle)."""


class UnsupportedMediaType(
    AppError,
    status=415,
    code="unsupported_media_type",
    message="send the request body as Content-Type: application/json",
):
    """415: the request's Content-Type is not JSON (the API validates JSON bodies only)."""


class InvalidInput(AppError, status=422, code="invalid_input", message="invalid pixel data"):
    """422: the object decodes, but not to (n, 784) integral pixels in 0..255."""


class UpstreamError(
    AppError, status=502, code="s3_error", message="S3 returned an unexpected error"
):
    """502: S3 answered with an error this function does not expect."""


class UpstreamUnavailable(
    AppError, status=503, code="s3_unavailable", message="S3 could not be reached"
):
    """503: S3 could not be reached (connection refused, DNS, connect timeout, broken stream)."""


class DeadlineExceeded(
    AppError, status=504, code="timeout", message="the request ran out of time"
):
    """504: the invocation's remaining time ran out (S3 read timeout, or too little time left)."""
