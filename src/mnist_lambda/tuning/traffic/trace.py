"""Running a trace: ``POST /predict`` at each arrival time, open loop, no retries.

A request leaves at its scheduled time whether or not the earlier ones have returned (one
thread per request in flight, at most :data:`MAX_IN_FLIGHT`; how late a send was is recorded),
and every 429 and 500 is counted as the client sees it. Loopback only: the stack's own URL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

from mnist_lambda.client import Client, EndpointAuth, EndpointError, Result

MAX_IN_FLIGHT = 64
"""Requests in flight at once (client threads); a send beyond it waits and is counted late."""
REQUEST_TIMEOUT_S = 35.0
"""Client timeout of one request (longer than API Gateway's 29 s integration timeout)."""

FROM_RESULT = (
    "seconds", "status", "lambda_throttled", "instance", "cold", "duration_ms", "init_ms",
    "max_memory_mb",
)  # fmt: skip
"""The fields a :class:`Call` takes from the client's :class:`~mnist_lambda.client.Result`."""


@dataclass(frozen=True)
class Call:
    """One request of a trace as the client saw it (times from the trace's start)."""

    scheduled_s: float
    sent_s: float
    seconds: float
    """Client wall-clock, send to answer."""
    status: int
    """HTTP status; 0 when no answer came (connection error, timeout)."""
    lambda_throttled: bool = False
    """A 500 carrying ``X-Lambda-Emulator-Throttled: true`` (reserved concurrency reached)."""
    instance: str | None = None
    """The environment that ran it; None when the function was not invoked."""
    cold: bool | None = None
    duration_ms: float | None = None
    """The function's duration as Lambda reports it (a cold call's includes its init)."""
    init_ms: float | None = None
    max_memory_mb: float | None = None
    error: str | None = None

    @classmethod
    def coerce(cls, record: Call | Mapping[str, Any]) -> Call:
        """``record`` as a Call (a mapping's unknown keys are dropped)."""
        if isinstance(record, Call):
            return record
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    @classmethod
    def answered(cls, scheduled_s: float, sent_s: float, result: Result) -> Call:
        """A request that got an answer, whatever its status."""
        return cls(scheduled_s, sent_s, **{name: getattr(result, name) for name in FROM_RESULT})

    @property
    def stage_throttled(self) -> bool:
        """API Gateway's own 429: the stage's token bucket refused it (the function never ran)."""
        return self.status == 429 and self.instance is None

    @property
    def warm(self) -> bool:
        return self.cold is False


def run_trace(
    url: str,
    body: Mapping[str, Any],
    arrivals: Sequence[float],
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    timeout_s: float = REQUEST_TIMEOUT_S,
    auth: EndpointAuth | None = None,
) -> list[Call]:
    """POST ``body`` to ``url`` at each of ``arrivals`` (s from now), open loop, no retries;
    ``auth``: an authenticated endpoint's."""
    calls: list[Call | None] = [None] * len(arrivals)
    payload = dict(body)

    with (
        Client(
            url, max_attempts=1, timeout_s=timeout_s, pool_size=max_in_flight, auth=auth
        ) as client,
        ThreadPoolExecutor(max_in_flight, thread_name_prefix="traffic") as pool,
    ):
        t0 = time.perf_counter()

        def one(index: int, scheduled: float) -> None:
            sent = time.perf_counter() - t0
            try:
                calls[index] = Call.answered(scheduled, sent, client.post(payload))
            except EndpointError as exc:
                seconds = time.perf_counter() - t0 - sent
                calls[index] = Call(scheduled, sent, seconds, 0, error=str(exc)[:300])

        for index, scheduled in enumerate(arrivals):
            if (delay := t0 + scheduled - time.perf_counter()) > 0:
                time.sleep(delay)
            pool.submit(one, index, float(scheduled))
    missing = [i for i, c in enumerate(calls) if c is None]
    if missing:
        raise RuntimeError(f"{len(missing)} request(s) of the trace recorded nothing")
    return [c for c in calls if c is not None]
