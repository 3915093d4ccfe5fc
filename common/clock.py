"""Injected time (design.md rule 3): code reads a Clock; tests advance a FakeClock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds, for timeouts."""
        ...

    def time(self) -> float:
        """Seconds since the epoch, for timestamps people read."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def time(self) -> float:
        return 1_700_000_000.0 + self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds
