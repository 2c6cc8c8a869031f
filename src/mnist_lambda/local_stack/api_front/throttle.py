"""A stage or usage plan throttle as API Gateway applies it (a token bucket), and a usage
plan's quota per UTC day, week or month."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

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


def period_start(period: str, now: datetime) -> datetime:
    """The start of the quota period (UTC) that ``now`` falls in: the day, the week (from
    Sunday, a usage plan's default offset) or the month."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "DAY":
        return day
    if period == "WEEK":
        return day - timedelta(days=(day.weekday() + 1) % 7)  # Monday is 0, Sunday 6
    if period == "MONTH":
        return day.replace(day=1)
    raise ValueError(f"quota period must be DAY, WEEK or MONTH, not {period!r}")


class QuotaMeter:
    """A usage plan's quota for one API key: ``limit`` requests per UTC ``period``."""

    def __init__(self, limit: int, period: str) -> None:
        period_start(period, datetime.now(UTC))  # refuses an unknown period now
        self.limit, self.period = limit, period
        self.used, self.start = 0, datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def take(self, now: datetime | None = None) -> bool:
        """Count one request if the period has room for it."""
        start = period_start(self.period, now or datetime.now(UTC))
        with self._lock:
            if start != self.start:
                self.start, self.used = start, 0
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def remaining(self, now: datetime | None = None) -> int:
        start = period_start(self.period, now or datetime.now(UTC))
        with self._lock:
            return self.limit - (self.used if start == self.start else 0)
