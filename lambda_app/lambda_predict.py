"""AWS Lambda entry point: ``POST /predict {"bucket", "key"}`` -> JSON list of digit labels.

The handler reads one object of pixels from an allow-listed S3 location (``.npy``, ``.npz``,
``.csv`` or ``.csv.gz``; never pickle), validates it as ``(n, 784)`` uint8 and answers the
model's labels in row order, with the model's identity and timings in response headers.
``"return": "probabilities"`` answers ``{"labels", "probabilities", "classes"}`` instead (see
``mnist_serving.predictions``); an answer over Lambda's 6 MB response limit is a 413.

Configuration (environment, read once at import, as Lambda fixes it per function version):

* ``MODEL_PATH``: the model, ``.npz`` (numpy) or ``.onnx`` (onnxruntime); default: the file
  ``model/manifest.json`` names, else ``model/model.npz`` beside this file. The manifest also
  supplies ``version`` / ``run_id`` (and a checked ``sha256``).
* ``ALLOWED_BUCKETS``: comma-separated ``bucket`` or ``bucket/prefix``; empty allows nothing.
* ``MAX_OBJECT_BYTES``: largest object (and decompressed CSV) accepted, default 50 MiB.
* ``LOG_LEVEL``: ``DEBUG``, ``INFO`` (default), ``WARNING`` or ``ERROR``.
* ``OUTPUT_PREFIX``: key prefix under which a request's ``output_key`` may write the labels
  (in an allowed bucket); empty or unset disables ``output_key`` (see ``mnist_serving.output``).
* S3 client: boto3's standard chain, e.g. ``AWS_ENDPOINT_URL_S3`` for a local S3; created at
  init, so the first request does not pay for it.

SnapStart (the template's ``SnapStart`` parameter): init runs once per published version and is
snapshotted; the hooks below drop, before the snapshot, what must not be shared by every
restored environment, and make it again after each restore.

Only serving code is imported here (numpy, boto3, the ``mnist_serving`` package): no pandas,
scikit-learn or scipy, so the image stays small and the cold start short.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from snapshot_restore_py import register_after_restore, register_before_snapshot

from mnist_serving import logs, output, payload, request, s3io
from mnist_serving.allowlist import AllowList
from mnist_serving.budget import Budget
from mnist_serving.errors import AppError, DeadlineExceeded, ResponseTooLarge
from mnist_serving.loading import ServingModel, default_model_path
from mnist_serving.loading import load_model as load
from mnist_serving.model_info import ModelInfo, describe
from mnist_serving.predictions import Predictions
from mnist_serving.responses import error_response, json_response, server_timing

DEFAULT_MODEL_PATH = default_model_path(Path(__file__).resolve().parent / "model")
DEFAULT_MAX_OBJECT_BYTES = 50 * 1024 * 1024
PREDICT_SLICE_ROWS = 1024
"""Rows predicted between two checks of the time budget."""
MIN_PREDICT_MS = 200
"""Time the predict step needs to be worth starting."""
RESPONSE_LIMIT_BYTES = 6_291_556
"""Lambda's synchronous response payload limit (the response as the runtime sends it, a JSON
document). Lambda does not deliver a larger one (API Gateway answers 502): 413 instead. A copy
of ``mnist_lambda.aws_limits.LAMBDA_RESPONSE_BYTES`` (the image does not ship the project);
tests/unit/test_platform_facts.py proves the two equal."""

logs.configure(os.environ.get("LOG_LEVEL"))
LOGGER = logging.getLogger(f"{logs.LOGGER_NAME}.handler")


class Settings(NamedTuple):
    """The function's configuration, from the environment."""

    model_path: Path
    allowed: AllowList
    max_object_bytes: int
    output_prefix: str = ""


def read_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Parse the environment; raises ValueError naming the variable that is wrong."""
    raw_max = env.get("MAX_OBJECT_BYTES", "").strip() or str(DEFAULT_MAX_OBJECT_BYTES)
    try:
        max_object_bytes = int(raw_max)
    except ValueError:
        max_object_bytes = 0
    if max_object_bytes <= 0:
        raise ValueError(f"MAX_OBJECT_BYTES must be a positive integer, got {raw_max!r}")
    return Settings(
        model_path=Path(env.get("MODEL_PATH") or DEFAULT_MODEL_PATH),
        allowed=AllowList.parse(env.get("ALLOWED_BUCKETS")),
        max_object_bytes=max_object_bytes,
        output_prefix=output.parse_prefix(env.get("OUTPUT_PREFIX")),
    )


def load_model(path: Path) -> tuple[ServingModel, ModelInfo]:
    """Load the model and describe it; a missing file fails loudly, naming MODEL_PATH."""
    if not path.is_file():
        raise FileNotFoundError(
            f"model file not found: MODEL_PATH={path} (set MODEL_PATH, or put the trained model "
            f"at model/model.npz beside lambda_predict.py)"
        )
    return load(path), describe(path)


SETTINGS = read_settings()
MODEL, MODEL_INFO = load_model(SETTINGS.model_path)
LOGGER.info(
    "model loaded",
    extra={
        "model_sha256": MODEL_INFO.sha256,
        "model_version": MODEL_INFO.version,
        "model_run_id": MODEL_INFO.run_id,
        "allowed_entries": len(SETTINGS.allowed.entries),
        "max_object_bytes": SETTINGS.max_object_bytes,
    },
)
s3io.get_client()


@register_before_snapshot
def before_snapshot() -> None:
    """SnapStart, once per version: no S3 connection or credentials go into the snapshot (every
    restored environment would share them)."""
    s3io.drop_client()
    LOGGER.info("before snapshot: S3 client closed")


@register_after_restore
def after_restore() -> None:
    """SnapStart, in each restored environment: a new S3 client (its own connections, this
    environment's credentials) and a new random state (botocore's retry jitter uses it)."""
    random.seed()
    s3io.drop_client()
    s3io.get_client()
    LOGGER.info("after restore: new S3 client", extra={"pid": os.getpid()})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway proxy event; never raises, never leaks internals."""
    started = time.perf_counter()
    request_id = _request_id(context)
    token = logs.REQUEST_ID.set(request_id)
    timings: dict[str, float] = {}
    fields: dict[str, Any] = {"apigw_request_id": _apigw_request_id(event)}
    headers = {"X-Request-Id": request_id, **MODEL_INFO.headers()}
    level = logging.INFO
    try:
        predictions, written = _predict_request(event, context, timings, fields)
        with _timed(timings, "encode"):
            response = json_response(
                200,
                predictions.body() if written is None else written,
                {**headers, "X-Row-Count": str(len(predictions))},
            )
        response["headers"]["Server-Timing"] = server_timing(timings)
        _check_response_size(response)
    except AppError as exc:
        fields.update(error_code=exc.code, error_message=exc.message)
        level = logging.ERROR if exc.status >= 500 else logging.WARNING
        response = error_response(exc, request_id, {**headers, **_timing_header(timings)})
    except Exception as exc:
        LOGGER.exception("unexpected error", extra={"error_type": type(exc).__name__})
        fields.update(error_code=AppError.code)
        level = logging.ERROR
        response = error_response(exc, request_id, {**headers, **_timing_header(timings)})
    try:
        LOGGER.log(
            level,
            "request finished",
            extra={
                "status": response["statusCode"],
                "timings_ms": {k: round(v, 1) for k, v in timings.items()},
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                **fields,
            },
        )
    finally:
        logs.REQUEST_ID.reset(token)
    return response


def predict_within_budget(
    model: ServingModel, pixels: np.ndarray, budget: Budget, *, probabilities: bool = False
) -> np.ndarray:
    """Predict in slices, answering 504 rather than overrunning the invocation's time.

    Returns the (n,) int64 labels, or with ``probabilities`` the (n, n_classes) float32
    probabilities (``model.predict_proba``, columns in the order of ``model.classes``).
    """
    budget.require(MIN_PREDICT_MS, f"predict {len(pixels)} rows")
    if probabilities:
        step, out = model.predict_proba, np.empty((len(pixels), len(model.classes)), np.float32)
    else:
        step, out = model.predict, np.empty(len(pixels), dtype=np.int64)
    for start in range(0, len(pixels), PREDICT_SLICE_ROWS):
        if start and budget.left_ms() <= 0:
            raise DeadlineExceeded(
                f"ran out of time after predicting {start} of {len(pixels)} rows"
            )
        out[start : start + PREDICT_SLICE_ROWS] = step(pixels[start : start + PREDICT_SLICE_ROWS])
    return out


def _predict_request(
    event: Any, context: Any, timings: dict[str, float], fields: dict[str, Any]
) -> tuple[Predictions, dict[str, Any] | None]:
    """The predictions, and where they were written when the request has an ``output_key``."""
    req = request.parse_event(event)
    fields.update(bucket=req.bucket, key=req.key, **{"return": req.return_})
    SETTINGS.allowed.check(req.bucket, req.key)
    target = None
    if req.output_key is not None:
        fields["output_key"] = req.output_key
        target = output.check_target(
            req.bucket,
            req.output_key,
            SETTINGS.output_prefix,
            SETTINGS.allowed,
            probabilities=req.probabilities,
        )
    fmt = payload.format_for_key(req.key)
    budget = Budget(context)
    with _timed(timings, "s3"):
        data = s3io.fetch_object(
            s3io.get_client(),
            req.bucket,
            req.key,
            max_bytes=SETTINGS.max_object_bytes,
            budget=budget,
        )
    fields["object_bytes"] = len(data)
    with _timed(timings, "decode"):
        pixels = payload.load_pixels(fmt, data, max_bytes=SETTINGS.max_object_bytes)
    del data
    fields["rows"] = len(pixels)
    with _timed(timings, "predict"):
        predicted = predict_within_budget(MODEL, pixels, budget, probabilities=req.probabilities)
    if req.probabilities:
        predictions = Predictions.from_probabilities(predicted, MODEL.classes)
    else:
        predictions = Predictions(predicted)
    if target is None:
        return predictions, None
    body, content_type = target.encode(predictions)
    with _timed(timings, "s3_put"):
        s3io.put_object(
            s3io.get_client(), target.bucket, target.key, body, content_type, budget=budget
        )
    return predictions, target.location(len(predictions))


def _check_response_size(response: Mapping[str, Any]) -> None:
    """413 rather than an answer Lambda would not deliver (probabilities of many rows)."""
    size = len(response["body"])
    if size > RESPONSE_LIMIT_BYTES // 2:  # else far below: no need to measure the envelope
        size = len(json.dumps(response))  # as the runtime sends it (ASCII: characters = bytes)
    if size > RESPONSE_LIMIT_BYTES:
        raise ResponseTooLarge(
            f"the answer would be {size:,} bytes, over Lambda's {RESPONSE_LIMIT_BYTES:,}-byte "
            f"response limit: send fewer rows per request, or write the predictions to S3 "
            f"with 'output_key'"
        )


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = (time.perf_counter() - start) * 1000


def _timing_header(timings: Mapping[str, float]) -> dict[str, str]:
    return {"Server-Timing": server_timing(timings)} if timings else {}


def _request_id(context: Any) -> str:
    value = getattr(context, "aws_request_id", None)
    return value if isinstance(value, str) and value else str(uuid.uuid4())


def _apigw_request_id(event: Any) -> str | None:
    if isinstance(event, Mapping):
        ctx = event.get("requestContext")
        if isinstance(ctx, Mapping) and isinstance(ctx.get("requestId"), str):
            return ctx["requestId"]
    return None
