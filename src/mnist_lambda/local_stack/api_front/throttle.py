"""A stage throttle as API Gateway applies it: a token bucket."""

from __future__ import annotations

import threading
import time

from mnist_lambda.template.reader import Throttle


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; a request spends one."""

    def __init__(self, throttle: Throttle) -> None:
        self.rate, self.capacity = throttle.rate_limit, float(throttle.burst_limit)
        self.tokens, self.stamp = self.capacity, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True
