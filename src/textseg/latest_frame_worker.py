"""A newest-frame worker: inference runs off the ROS executor thread, on the newest frame only.

A frame that arrives while another from the same source is still waiting replaces it (the
older one is counted as dropped), so a slow model never builds a queue and latency never
grows. With several sources (cameras), each has its own slot and the worker serves the
waiting sources in turn, so one fast camera cannot starve the others: under overload every
camera gets an equal share of the model.

With `process_batch` and `max_batch` > 1, the worker hands over the newest frames of up to
`max_batch` waiting sources at once (in the same turn order), so one inference can serve
several cameras on a backend that gains from it.

With `threads` > 1, that many threads take waiting items, so several inferences run at once
(one camera's consecutive frames too): a CPU backend with one session per thread gets more
frames through than one session using every core. Results may then finish out of order; the
caller drops a result whose frame arrived before one it already published.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any


class LatestFrameWorker:
    def __init__(self, process: Callable[[Any], None],
                 on_error: Callable[[BaseException], None] | None = None,
                 name: str = "inference",
                 process_batch: Callable[[list[Any]], Sequence[BaseException | None]]
                 | None = None, max_batch: int = 1, threads: int = 1) -> None:
        """`process(item)` raises to count a failure; `process_batch(items)` returns, per item,
        the exception it failed with or None. `max_batch` may be changed while running;
        `threads` items are processed at once."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._process = process
        self._process_batch = process_batch
        self.max_batch = max_batch
        self._on_error = on_error
        self._condition = threading.Condition()
        # source -> newest waiting item; insertion order = the order sources get served in.
        self._pending: OrderedDict[Hashable, Any] = OrderedDict()
        self._stopping = False
        self.submitted = 0
        self.dropped_by_source: dict[Hashable, int] = {}
        self.processed = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, daemon=True,
                                          name=name if threads == 1 else f"{name}-{i}")
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, item: Any, source: Hashable = None) -> None:
        """Hand over the newest item of `source`; cheap, never blocks on inference."""
        with self._condition:
            self.submitted += 1
            if source in self._pending:
                self._count_drop(source)
            self._pending[source] = item  # a waiting source keeps its place in the turn order
            self._condition.notify()

    def is_alive(self) -> bool:
        """Whether any of the worker's threads still runs (after `stop`: one was stuck)."""
        return any(thread.is_alive() for thread in self._threads)

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_source.values())

    def _count_drop(self, source: Hashable) -> None:
        self.dropped_by_source[source] = self.dropped_by_source.get(source, 0) + 1

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop taking items and wait up to `timeout` s (None: for ever) for the item in
        progress; True when every thread has finished."""
        with self._condition:
            self._stopping = True
            for source in self._pending:  # never processed: count them so the books balance
                self._count_drop(source)
            self._pending.clear()
            self._condition.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.is_alive()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                # The sources that have waited longest; a source that submits again after
                # being served queues up behind the others.
                take = 1 if self._process_batch is None else max(1, self.max_batch)
                items = [self._pending.popitem(last=False)[1]
                         for _ in range(min(take, len(self._pending)))]
            if len(items) == 1:
                try:
                    self._process(items[0])
                    outcomes: Sequence[BaseException | None] = [None]
                except Exception as exc:  # one bad frame must not stop the worker
                    outcomes = [exc]
            else:
                try:
                    outcomes = self._process_batch(items)
                except Exception as exc:  # noqa: BLE001 - the whole batch failed
                    outcomes = [exc] * len(items)
            failures = [outcome for outcome in outcomes if outcome is not None]
            with self._condition:  # the counters are shared by the threads
                self.processed += len(outcomes) - len(failures)
                self.failed += len(failures)
                if failures:
                    self.last_error = failures[-1]
            for outcome in failures:
                if self._on_error is not None:
                    self._on_error(outcome)
