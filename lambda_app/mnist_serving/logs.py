"""Structured logs: one JSON object per line on stdout, tagged with the current request id.

Standard :mod:`logging` plus a small formatter (no aws-lambda-powertools: it would grow the
image for little gain). Fields passed with ``extra={...}`` become top-level JSON keys.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

LOGGER_NAME = "mnist_serving"
"""Every module logs under this name; the handler is attached here (not to the root logger,
which the Lambda runtime configures with its own plain-text format)."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str | None) -> logging.Logger:
    """Send the package's logs to stdout as JSON lines at ``level`` (a name; default INFO).

    Idempotent: calling it again (a module reload) replaces the handler instead of adding one.
    """
    logger = logging.getLogger(LOGGER_NAME)
    name = (level or "INFO").strip().upper()
    resolved = logging.getLevelName(name)
    invalid = not isinstance(resolved, int)
    logger.setLevel(logging.INFO if invalid else resolved)
    for old in [h for h in logger.handlers if getattr(h, "_mnist_json", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._mnist_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    if invalid:
        logger.warning("LOG_LEVEL %r is not a level name; using INFO", level)
    return logger
