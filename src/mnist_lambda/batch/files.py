"""Where a batch's rows come from and where its labels go: local files or S3."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import storage
from mnist_serving.predictions import Predictions
from mnist_serving.schema import N_PIXELS

PROBABILITY_SUFFIXES = (".json", ".npz")
"""Output files that can hold probabilities as well as labels."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key-or-prefix`` -> (bucket, key)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, key


def default_work_prefix(source: str) -> str:
    """Where a batch's chunks go when not told: ``batch/`` beside an ``s3://`` source's object
    (the function reads there already), else ``batch/``."""
    key = parse_s3_url(source)[1] if source.startswith("s3://") else ""
    return key.rsplit("/", 1)[0] + "/batch/" if "/" in key else "batch/"


def load_npy(data: bytes) -> np.ndarray:
    """``(n, 784)`` pixels from ``.npy`` bytes (no pickle)."""
    pixels = np.load(io.BytesIO(data), allow_pickle=False)
    if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
        raise ValueError(f"expected (n, {N_PIXELS}) pixels, got shape {pixels.shape}")
    return pixels


def read_source(source: str, s3: Any = None) -> tuple[np.ndarray, list[str]]:
    """Rows from a local ``.npy``, one ``s3://`` ``.npy`` object, or every ``.npy`` under an
    ``s3://`` prefix (ending in ``/``) concatenated in key order; also the keys read."""
    if not source.startswith("s3://"):
        return load_npy(Path(source).read_bytes()), [source]
    bucket, key = parse_s3_url(source)
    if key and not key.endswith("/"):
        return load_npy(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), [key]
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".npy")]
    if not keys:
        raise ValueError(f"no .npy objects under {source}")
    keys.sort()
    parts = [load_npy(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    return np.concatenate(parts), keys


def check_destination(destination: str, probabilities: bool) -> None:
    """Raise ValueError if ``destination`` cannot hold what the batch returns: probabilities
    go to ``.json`` or ``.npz`` (a ``.npy`` holds one array, the labels)."""
    if probabilities and not destination.endswith(PROBABILITY_SUFFIXES):
        raise ValueError(
            f"{destination}: probabilities are written to a .json or .npz file (.npy holds the "
            f"labels only)"
        )


def write_predictions(
    labels: np.ndarray,
    destination: str,
    s3: Any = None,
    *,
    probabilities: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> str:
    """Write the labels as ``.npy`` (int64) or ``.json`` to a local path (atomically) or an
    ``s3://`` URL (one PUT).

    With ``probabilities`` (and ``classes``): ``.json`` holds the endpoint's answer object
    ``{"labels", "probabilities", "classes"}`` (probabilities rounded to 4 decimals), ``.npz``
    the arrays ``labels``, ``probabilities`` (float32) and ``classes`` (``np.savez``, no pickle).
    """
    check_destination(destination, probabilities is not None)
    if probabilities is not None and classes is None:
        raise ValueError("probabilities need their classes")
    predictions = Predictions(np.asarray(labels, dtype=np.int64), probabilities, classes)
    buf = io.BytesIO()
    if destination.endswith(".json"):
        buf.write(json.dumps(predictions.body(), separators=(",", ":")).encode())
    elif probabilities is not None:
        np.savez(buf, **predictions.arrays())
    else:
        np.save(buf, predictions.labels, allow_pickle=False)
    if not destination.startswith("s3://"):
        with storage.atomic_path(destination) as tmp:
            tmp.write_bytes(buf.getvalue())
        return destination
    bucket, key = parse_s3_url(destination)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    return destination
