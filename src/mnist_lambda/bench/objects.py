"""Our request objects and what they weigh (the tutorial's: :mod:`mnist_lambda.tutorial.model`)."""

from __future__ import annotations

import io

import numpy as np

from mnist_lambda.deploy.s3_data import npy_bytes


def our_object(pixels: np.ndarray) -> bytes:
    """Our request object: uint8 pixels in a compressed ``.npz`` (array ``X``)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.ascontiguousarray(pixels, dtype=np.uint8))
    return buf.getvalue()


def npy_size(pixels: np.ndarray) -> int:
    """Bytes of the same rows as plain ``.npy`` (what predict-batch uploads)."""
    return len(npy_bytes(np.ascontiguousarray(pixels, dtype=np.uint8)))
