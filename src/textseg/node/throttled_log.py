"""Rate-limited logging for per-frame problems: a camera that sends garbage at 30 Hz, or a model
that fails on every frame, logs one line per problem every few seconds, not thirty a second,
and each line says how many like it were held back since the last. ROS-free: it writes through
whatever logging call it is handed."""

from __future__ import annotations

import time
from collections.abc import Callable

from textseg.stats import RateLimitedLog


class ThrottledLog:
    """At most one line per key per period through the logging call it is given."""

    def __init__(self, period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = RateLimitedLog(period_s)
        self._clock = clock

    def __call__(self, write: Callable[[str], object], key: str, message: str,
                 held_back: str = "more since the last message") -> bool:
        """Write `message` unless a line of `key` went out less than a period ago; a line
        after held-back ones ends with '(N <held_back>)'. True when it was written."""
        allowed, held = self._limit.allow(key, self._clock())
        if allowed:
            write(f"{message} ({held} {held_back})" if held else message)
        return allowed
