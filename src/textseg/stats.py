"""ROS-free bookkeeping for the node: counters, rates, latency percentiles, the diagnostic
key/values built from them, and per-reason rate-limited logging.

Thread-safe: the executor thread records arrivals and rejections, the worker records
processed frames, a timer reads snapshots.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2


class StatKey:
    """The keys of the node's diagnostic values, defined once: the node publishes under them
    (diagnostic_values, node/diagnostics.py) and its clients (textseg replay, bench, overload)
    read them back by them."""

    BACKEND = "backend"  # the backend's description
    INPUT_RATE_HZ = "input rate (Hz)"
    OUTPUT_RATE_HZ = "output rate (Hz)"
    INFERENCE_P50_MS = "inference p50 (ms)"
    INFERENCE_P99_MS = "inference p99 (ms)"
    END_TO_END_P50_MS = "end-to-end p50 (ms)"
    END_TO_END_P99_MS = "end-to-end p99 (ms)"
    OVERHEAD_P50_MS = "node overhead p50 (ms)"  # the node's own time outside inference
    OVERHEAD_P99_MS = "node overhead p99 (ms)"
    MESSAGES_RECEIVED = "messages received"
    FRAMES_PROCESSED = "frames processed"
    FRAMES_DROPPED = "frames dropped"
    MESSAGES_REJECTED = "messages rejected"
    REJECTED_PREFIX = "rejected: "  # + the reason, one key per reason
    INFERENCE_FAILURES = "inference failures"
    FRAMES_SKIPPED = "frames skipped (no subscribers)"
    RESULTS_LATE = "results dropped as late (a newer frame's went out first)"
    LAST_ERROR = "last error"


class RollingSamples:
    """The last `size` samples of one measurement (seconds)."""

    def __init__(self, size: int = 512) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def percentiles(self, *qs: float) -> tuple[float, ...] | None:
        if not self._values:
            return None
        return tuple(float(v) for v in np.percentile(np.fromiter(self._values, float), qs))

    def __len__(self) -> int:
        return len(self._values)


class EventRate:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = now - self._times[0]  # decays when events stop
        return len(self._times) / span if span > 0 else 0.0


@dataclass(frozen=True)
class StatsSnapshot:
    received: int
    processed: int
    dropped: int
    rejected: int
    rejected_by_reason: dict[str, int]
    failed: int
    skipped: int  # no subscriber to any output
    input_rate_hz: float
    output_rate_hz: float
    inference_ms: tuple[float, float] | None  # p50, p99
    end_to_end_ms: tuple[float, float] | None
    overhead_ms: tuple[float, float] | None
    seconds_since_input: float | None
    last_error: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    late: int = 0  # results not published: a newer frame's were out first (parallel inferences)


class NodeStatistics:
    def __init__(self, window: int = 512, rate_window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.failed = self.skipped = self.late = 0
        self.rejected: Counter[str] = Counter()
        self._inference = RollingSamples(window)
        self._end_to_end = RollingSamples(window)
        self._overhead = RollingSamples(window)
        self._input_rate = EventRate(rate_window_s)
        self._output_rate = EventRate(rate_window_s)
        self._last_input: float | None = None
        self.last_error = ""

    def record_received(self, now: float) -> None:
        with self._lock:
            self.received += 1
            self._input_rate.add(now)
            self._last_input = now

    def record_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def record_failed(self, message: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = message

    def record_skipped(self) -> None:
        with self._lock:
            self.skipped += 1

    def record_late(self) -> None:
        with self._lock:
            self.late += 1

    def record_frame(self, now: float, inference_s: float, overhead_s: float,
                     end_to_end_s: float) -> None:
        with self._lock:
            self.processed += 1
            self._output_rate.add(now)
            self._inference.add(inference_s)
            self._overhead.add(overhead_s)
            self._end_to_end.add(end_to_end_s)

    def snapshot(self, now: float, dropped: int = 0) -> StatsSnapshot:
        def ms(samples: RollingSamples):
            values = samples.percentiles(50, 99)
            return None if values is None else (values[0] * 1e3, values[1] * 1e3)

        with self._lock:
            return StatsSnapshot(
                received=self.received, processed=self.processed, dropped=dropped,
                rejected=sum(self.rejected.values()), rejected_by_reason=dict(self.rejected),
                failed=self.failed, skipped=self.skipped,
                input_rate_hz=self._input_rate.rate(now),
                output_rate_hz=self._output_rate.rate(now),
                inference_ms=ms(self._inference), end_to_end_ms=ms(self._end_to_end),
                overhead_ms=ms(self._overhead),
                seconds_since_input=None if self._last_input is None else now - self._last_input,
                last_error=self.last_error, late=self.late)


def _ms(pair: tuple[float, float] | None) -> tuple[str, str]:
    return ("-", "-") if pair is None else (f"{pair[0]:.2f}", f"{pair[1]:.2f}")


def diagnostic_values(snap: StatsSnapshot, context: dict[str, str]) -> list[tuple[str, str]]:
    """Key/value pairs for diagnostic_msgs/DiagnosticStatus (all strings)."""
    values = list(context.items())
    values += [
        (StatKey.INPUT_RATE_HZ, f"{snap.input_rate_hz:.2f}"),
        (StatKey.OUTPUT_RATE_HZ, f"{snap.output_rate_hz:.2f}"),
    ]
    for p50_key, p99_key, pair in (
            (StatKey.INFERENCE_P50_MS, StatKey.INFERENCE_P99_MS, snap.inference_ms),
            (StatKey.END_TO_END_P50_MS, StatKey.END_TO_END_P99_MS, snap.end_to_end_ms),
            (StatKey.OVERHEAD_P50_MS, StatKey.OVERHEAD_P99_MS, snap.overhead_ms)):
        p50, p99 = _ms(pair)
        values += [(p50_key, p50), (p99_key, p99)]
    values += [
        (StatKey.MESSAGES_RECEIVED, str(snap.received)),
        (StatKey.FRAMES_PROCESSED, str(snap.processed)),
        (StatKey.FRAMES_DROPPED, str(snap.dropped)),
        (StatKey.MESSAGES_REJECTED, str(snap.rejected)),
    ]
    values += [(f"{StatKey.REJECTED_PREFIX}{reason}", str(count))
               for reason, count in sorted(snap.rejected_by_reason.items())]
    values += [(StatKey.INFERENCE_FAILURES, str(snap.failed)),
               (StatKey.FRAMES_SKIPPED, str(snap.skipped)),
               (StatKey.RESULTS_LATE, str(snap.late))]
    if snap.last_error:
        values.append((StatKey.LAST_ERROR, snap.last_error))
    return values


def diagnostic_level(snap: StatsSnapshot, previous: StatsSnapshot | None, state: str,
                     stale_after_s: float = 5.0) -> tuple[int, str]:
    """(level, message): ERROR on a fatal state or new inference failures, WARN on new
    rejections, loading/building, or input that stopped; OK otherwise."""
    if state.startswith("error"):
        return ERROR, state
    if previous is not None and snap.failed > previous.failed:
        return ERROR, f"inference failed {snap.failed - previous.failed} times"
    if state != "running":
        return WARN, state
    if previous is not None and snap.rejected > previous.rejected:
        return WARN, f"rejected {snap.rejected - previous.rejected} malformed messages"
    if snap.seconds_since_input is None:
        return OK, "waiting for images"
    if snap.seconds_since_input > stale_after_s:
        return WARN, f"no image for {snap.seconds_since_input:.0f} s"
    return OK, "running"


class RateLimitedLog:
    """At most one message per key per period; counts what it held back."""

    def __init__(self, period_s: float = 5.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(log now?, how many were suppressed since the last message for this key)."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._held[key] += 1
                return False, 0
            self._last[key] = now
            held, self._held[key] = self._held[key], 0
            return True, held
