"""One side of a comparison on a local stack of its own: its stack, its request objects in that
stack's S3, its calls; and the stacks of several sides, started and stopped together."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import local_stack
from mnist_lambda.bench.probes import function_peak_mb
from mnist_lambda.client import Client, EndpointError


@dataclass
class Side:
    """One side of the comparison: its stack and how to make its request objects."""

    name: str
    state_dir: Path
    make_object: Callable[[np.ndarray], bytes]
    suffix: str
    memory_mb: int = 0
    info: local_stack.StackInfo | None = None
    keys: dict[str, str] = field(default_factory=dict)
    object_bytes: dict[str, int] = field(default_factory=dict)
    max_memory_mb: float | None = None
    """The largest ``Max Memory Used`` the emulator reported (the environment's cgroup)."""
    client: Client | None = None
    client_auth: Mapping[str, Any] | None = None
    """The stack's auth (keys, callers) :attr:`client` was built for: a new one, a new client."""

    @property
    def stack(self) -> local_stack.StackInfo:
        """The side's running stack (started by :func:`stacks`)."""
        if self.info is None:
            raise RuntimeError(f"{self.name}: its stack is not started")
        return self.info

    def peak_mb(self) -> float | None:
        """Max Memory Used as Lambda counts it; without enforced limits, the runtime's VmHWM."""
        return self.max_memory_mb or function_peak_mb(self.state_dir)

    def upload(self, label: str, pixels: np.ndarray) -> None:
        """``pixels`` as this side's request object, in its stack's bucket, called ``label``."""
        body = self.make_object(pixels)
        key = f"bench/{self.name}-{label}{self.suffix}"
        local_stack.s3_client(self.stack).put_object(Bucket=self.stack.bucket, Key=key, Body=body)
        self.keys[label], self.object_bytes[label] = key, len(body)

    def redeploy(self) -> None:
        """A new deployment: the next call is a cold start."""
        self.info = local_stack.redeploy(self.state_dir)

    def call(self, label: str) -> dict[str, Any]:
        """One call on this side's keep-alive client (no retries: a benchmark counts failures,
        never hides them), as the stack's allowed caller when its API has auth
        (:func:`mnist_lambda.local_stack.endpoint_auth`)."""
        self.info = local_stack.read(self.state_dir) or self.info
        url, auth = self.stack.predict_url, self.stack.auth
        if self.client is None or self.client.url != url or self.client_auth != auth:
            if self.client is not None:
                self.client.close()
            auth_of_calls = local_stack.endpoint_auth(self.stack)
            self.client = Client(url, max_attempts=1, timeout_s=60, auth=auth_of_calls)
            self.client_auth = auth
        try:
            result = self.client.predict(self.stack.bucket, self.keys[label])
        except EndpointError as exc:
            raise RuntimeError(f"{self.name} {label}: {exc}") from exc
        if result.max_memory_mb is not None:
            self.max_memory_mb = max(self.max_memory_mb or 0.0, result.max_memory_mb)
        return {**result.timings(), "labels": result.labels}

    def timed_call(self, label: str) -> dict[str, Any]:
        """:meth:`call`'s timings without the labels."""
        call = self.call(label)
        call.pop("labels")
        return call


@contextlib.contextmanager
def stacks(sides: list[Side], start_kwargs: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Each side's stack started with ``start_kwargs[side.name]`` (for
    :func:`mnist_lambda.local_stack.start`); every client closed and every stack stopped on the
    way out."""
    try:
        for side in sides:
            side.info = local_stack.start(side.state_dir, timeout=120, **start_kwargs[side.name])
            side.memory_mb = side.info.memory_mb
        yield
    finally:
        for side in sides:
            if side.client is not None:
                side.client.close()
            with contextlib.suppress(Exception):
                local_stack.stop(side.state_dir)
