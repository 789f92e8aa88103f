"""A single-slot worker: inference runs off the ROS executor thread, on the newest frame only.

A frame that arrives while another is still waiting replaces it (the older one is counted as
dropped), so a slow model never builds a queue and latency never grows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestFrameWorker:
    def __init__(self, process: Callable[[Any], None],
                 on_error: Callable[[BaseException], None] | None = None,
                 name: str = "inference") -> None:
        self._process = process
        self._on_error = on_error
        self._condition = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._stopping = False
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        """Hand over the newest item; cheap, never blocks on inference."""
        with self._condition:
            self.submitted += 1
            if self._has_pending:
                self.dropped += 1
            self._pending = item
            self._has_pending = True
            self._condition.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._condition:
            self._stopping = True
            if self._has_pending:  # never processed: count it so the books balance
                self.dropped += 1
                self._pending, self._has_pending = None, False
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._has_pending and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                item, self._pending, self._has_pending = self._pending, None, False
            try:
                self._process(item)
                self.processed += 1
            except Exception as exc:  # one bad frame must not stop the worker
                self.failed += 1
                self.last_error = exc
                if self._on_error is not None:
                    self._on_error(exc)
