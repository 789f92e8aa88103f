"""A one-line progress bar with rate and ETA (stderr; plain lines when not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """`update(done, note)` redraws at most every `interval` s; `close()` ends the line.

    On a terminal the bar is redrawn in place; otherwise (logs, CI) a line is printed at
    every 10 % so logs stay short. `total` may be None (count only, no ETA).
    """

    def __init__(self, label: str, total: int | None, unit: str = "frames",
                 stream: TextIO | None = None, enabled: bool = True,
                 interval: float = 0.2, width: int = 24) -> None:
        self.label = label
        self.total = total if total and total > 0 else None
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.width = width
        self.started = time.monotonic()
        self.done = 0
        self.note = ""
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False
        self._printed: tuple[int, str] | None = None
        self._closed = False

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0.5 else 0.0  # too early to say
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * self.width)
            bar = "#" * filled + ("." * (self.width - filled))
            eta = (self.total - self.done) / rate if rate > 0 else None
            speed = f"{rate:5.1f} {self.unit}/s" if rate else f"  ... {self.unit}/s"
            head = (f"{self.label} {self.done}/{self.total} [{bar}] {fraction:4.0%} {speed}  "
                    f"elapsed {format_duration(elapsed)}  "
                    f"ETA {format_duration(eta if self.done < self.total else 0)}")
        else:
            head = (f"{self.label} {self.done} {self.unit}  {rate:5.1f} {self.unit}/s  "
                    f"elapsed {format_duration(elapsed)}")
        return f"{head}  {self.note}" if self.note else head

    def update(self, done: int, note: str = "") -> None:
        self.done, self.note = done, note
        if not self.enabled:
            return
        now = time.monotonic()
        if self._tty:
            if now - self._last_draw >= self.interval or (self.total and done >= self.total):
                self._last_draw = now
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self._drawn = True
        elif self.total:
            decile = int(10 * min(done, self.total) / self.total)
            if decile > self._last_decile:
                self._last_decile = decile
                self._print_line()

    def _print_line(self) -> None:
        self._printed = (self.done, self.note)
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar with the final figures (once; a second call does nothing)."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        if self._tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
            self.stream.flush()
        elif self._printed != (self.done, self.note):  # the final figures, if not shown yet
            self._print_line()
