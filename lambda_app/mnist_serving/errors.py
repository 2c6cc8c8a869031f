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

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class BadRequest(AppError):
    """400: the request body or its fields are malformed."""

    status = 400
    code = "bad_request"
    default_message = "malformed request"


class Forbidden(AppError):
    """403: the bucket/prefix is not allow-listed, or S3 denied access."""

    status = 403
    code = "forbidden"
    default_message = "access denied"


class NotFound(AppError):
    """404: the object (or its bucket) does not exist."""

    status = 404
    code = "not_found"
    default_message = "object not found"


class ObjectTooLarge(AppError):
    """413: the object (or its decompressed content) is over MAX_OBJECT_BYTES."""

    status = 413
    code = "object_too_large"
    default_message = "object too large"


class UnsupportedFormat(AppError):
    """415: the object's format is unknown, does not match its suffix, or is unsafe (pickle)."""

    status = 415
    code = "unsupported_format"
    default_message = "unsupported object format"


class UnsupportedMediaType(AppError):
    """415: the request's Content-Type is not JSON (the API validates JSON bodies only)."""

    status = 415
    code = "unsupported_media_type"
    default_message = "send the request body as Content-Type: application/json"


class InvalidInput(AppError):
    """422: the object decodes, but not to (n, 784) integral pixels in 0..255."""

    status = 422
    code = "invalid_input"
    default_message = "invalid pixel data"


class UpstreamError(AppError):
    """502: S3 answered with an error this function does not expect."""

    status = 502
    code = "s3_error"
    default_message = "S3 returned an unexpected error"


class UpstreamUnavailable(AppError):
    """503: S3 could not be reached (connection refused, DNS, connect timeout, broken stream)."""

    status = 503
    code = "s3_unavailable"
    default_message = "S3 could not be reached"


class DeadlineExceeded(AppError):
    """504: the invocation's remaining time ran out (S3 read timeout, or too little time left)."""

    status = 504
    code = "timeout"
    default_message = "the request ran out of time"
