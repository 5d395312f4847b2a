"""Bounded waiting: every wait in the harness is one of these two, so none can hang."""
from __future__ import annotations

import time
from typing import TypeVar
from collections.abc import Callable

T = TypeVar("T")


class Deadline:
    """A point in time `seconds` from now, for waits that hand the time left to a blocking call."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self.end


def until(ready: Callable[[], T], timeout: float, interval: float = 0.01,
          sleep: Callable[[float], object] = time.sleep) -> T:
    """Call `ready` every `interval` seconds until it returns something true, for `timeout` seconds
    at most; its last value (false when the time ran out).  `sleep` waits between calls (a
    guest's clock, say: Guest.wait_until); the timeout is on the host's."""
    deadline = Deadline(timeout)
    while not (value := ready()) and not deadline.passed():
        sleep(min(interval, deadline.left()))
    return value
