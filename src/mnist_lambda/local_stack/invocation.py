"""One invocation of the function, between the API front and the Lambda emulator: what it
returned, and the two ways it ends without a result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class InvokeResult:
    """What one invocation through the emulator returned."""

    instance: str
    status: int = 0  # the RIE's HTTP status (0: no response)
    body: bytes = b""
    function_error: str | None = None  # X-Amz-Function-Error header, if the RIE sent one
    failure: str | None = None  # the emulator died / refused / hung: no usable response
    too_large: bool = False  # response beyond Lambda's 6 MB limit
    cold: bool = False  # the runtime was initialised (or restored) for this invocation
    restored: bool = False  # SnapStart: the environment was restored from the snapshot
    init_ms: float | None = None  # INIT REPORT durationMs (on a cold start)
    duration_ms: float | None = None  # REPORT Duration (the RIE counts init in it when cold)
    max_memory_mb: float | None = None  # the environment's cgroup peak (limits enforced)


class GatewayTimeout(Exception):
    """No answer (or no free instance) before the integration timeout."""


class FunctionThrottled(Exception):
    """Every environment is busy and the function's reserved concurrency allows no other."""


class Function(Protocol):
    """What the API front invokes: a function's pool of environments."""

    def invoke(self, payload: bytes, deadline: float) -> InvokeResult:
        """Invoke with ``payload`` (the event JSON); raise :class:`GatewayTimeout` at
        ``deadline`` (``time.monotonic()``), :class:`FunctionThrottled` when throttled."""
        ...
