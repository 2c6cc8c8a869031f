"""The real function (lambda_app + template_no_auth.yaml) on the local stack; one call to it."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

from mnist_lambda import local_stack
from mnist_lambda.client import Client

PREFIX = "inputs/"
"""The stacks here allow only this prefix of their bucket, as the template's DataKeyPrefix."""


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
