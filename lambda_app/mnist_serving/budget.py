"""The time budget of one invocation, read from the Lambda context.

Every slow step asks the budget first, so the function answers 504 with a JSON body instead of
being killed by Lambda's timeout (which API Gateway turns into a bare 502).
"""

from __future__ import annotations

import time
from typing import Any

from mnist_serving.errors import DeadlineExceeded

SAFETY_MARGIN_MS = 500
"""Kept back from the remaining time to build the response and write the log line."""

DEFAULT_BUDGET_MS = 25_000
"""Budget when there is no Lambda context (local calls): the template's function timeout."""


class Budget:
    """Milliseconds left for work: the context's remaining time minus a safety margin."""

    def __init__(self, context: Any = None, *, margin_ms: float = SAFETY_MARGIN_MS) -> None:
        self.margin_ms = margin_ms
        getter = getattr(context, "get_remaining_time_in_millis", None)
        if callable(getter):
            self._remaining_ms = lambda: float(getter())
        else:
            deadline = time.monotonic() + DEFAULT_BUDGET_MS / 1000

            def _remaining_ms() -> float:
                return (deadline - time.monotonic()) * 1000

            self._remaining_ms = _remaining_ms

    def left_ms(self) -> float:
        """Milliseconds left before the safety margin (negative once overdrawn)."""
        return self._remaining_ms() - self.margin_ms

    def require(self, need_ms: float, doing: str) -> None:
        """Raise 504 unless at least ``need_ms`` are left for ``doing``."""
        left = self.left_ms()
        if left < need_ms:
            raise DeadlineExceeded(
                f"not enough time left to {doing} ({max(left, 0):.0f} ms left, "
                f"{need_ms:.0f} ms needed)"
            )
