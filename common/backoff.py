"""Retrying less and less often: one rule for every loop that waits out a failure (Redis or
PostgreSQL away, an endpoint failing, a worker dying, a commit not there yet)."""

from __future__ import annotations

import random


def exponential(failures: int, *, base: float, cap: float, jitter: bool = True) -> float:
    """The wait after `failures` failures in a row (1 = the first): base, doubling with each
    failure, at most cap. With jitter, a random 50-100% of that, so that many clients that failed
    together do not retry in step."""
    delay = min(cap, base * 2 ** min(max(failures - 1, 0), 30))
    return delay * random.uniform(0.5, 1.0) if jitter else delay


class Backoff:
    """The waits of one retry loop: next() after each failure, reset() after a success."""

    def __init__(self, base: float, cap: float, *, jitter: bool = True) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return exponential(self.failures, base=self.base, cap=self.cap, jitter=self.jitter)

    @property
    def ceiling(self) -> float:
        """The longest the next wait may be (before jitter)."""
        return exponential(self.failures + 1, base=self.base, cap=self.cap, jitter=False)

    def reset(self) -> None:
        self.failures = 0
