"""Node bookkeeping without ROS: rates, percentiles, diagnostic values and levels, and the
per-reason log limiter."""

from __future__ import annotations

import threading

import pytest

from textseg.stats import (
    ERROR,
    OK,
    WARN,
    EventRate,
    NodeStatistics,
    RateLimitedLog,
    RollingSamples,
    diagnostic_level,
    diagnostic_values,
)


def test_rolling_samples_keep_the_newest():
    samples = RollingSamples(size=100)
    assert samples.percentiles(50) is None
    for value in range(1000):
        samples.add(float(value))
    assert len(samples) == 100
    p50, p99 = samples.percentiles(50, 99)
    assert p50 == pytest.approx(949.5)
    assert 997 <= p99 <= 999


def test_event_rate_over_a_window():
    rate = EventRate(window_s=5.0)
    assert rate.rate(0.0) == 0.0
    for i in range(51):  # 10 Hz for 5 s
        rate.add(i * 0.1)
    assert rate.rate(5.0) == pytest.approx(10.0, rel=0.05)
    assert rate.rate(30.0) == 0.0  # everything left the window


def test_statistics_snapshot():
    stats = NodeStatistics()
    for i in range(10):
        stats.record_received(i * 0.1)
    stats.record_rejected("encoding")
    stats.record_rejected("encoding")
    stats.record_rejected("step")
    stats.record_failed("RuntimeError: boom")
    stats.record_skipped()
    for i in range(5):
        stats.record_frame(0.2 * i, inference_s=0.050, overhead_s=0.002, end_to_end_s=0.060)
    snap = stats.snapshot(1.0, dropped=4)
    assert (snap.received, snap.processed, snap.dropped, snap.rejected, snap.failed,
            snap.skipped) == (10, 5, 4, 3, 1, 1)
    assert snap.rejected_by_reason == {"encoding": 2, "step": 1}
    assert snap.inference_ms == pytest.approx((50.0, 50.0))
    assert snap.overhead_ms == pytest.approx((2.0, 2.0))
    assert snap.end_to_end_ms == pytest.approx((60.0, 60.0))
    assert snap.input_rate_hz == pytest.approx(10.0, rel=0.1)
    assert snap.output_rate_hz == pytest.approx(5.0, rel=0.1)
    assert snap.seconds_since_input == pytest.approx(0.1)
    assert snap.last_error == "RuntimeError: boom"


def test_statistics_are_thread_safe():
    stats = NodeStatistics()

    def hammer():
        for i in range(2000):
            stats.record_received(i * 1e-3)
            stats.record_frame(i * 1e-3, 0.01, 0.001, 0.02)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot(2.0)
    assert snap.received == snap.processed == 8000


def test_diagnostic_values_are_strings_with_units():
    stats = NodeStatistics()
    stats.record_received(0.0)
    stats.record_rejected("data_size")
    stats.record_frame(0.1, 0.0421, 0.0012, 0.0501)
    values = dict(diagnostic_values(stats.snapshot(0.2, dropped=3),
                                    {"backend": "onnxruntime", "model": "m.onnx"}))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
    assert values["backend"] == "onnxruntime"
    assert values["inference p50 (ms)"] == "42.10"
    assert values["node overhead p50 (ms)"] == "1.20"
    assert values["end-to-end p99 (ms)"] == "50.10"
    assert values["frames dropped"] == "3"
    assert values["messages rejected"] == "1"
    assert values["rejected: data_size"] == "1"
    for key in ("input rate (Hz)", "output rate (Hz)", "messages received", "frames processed",
                "inference failures"):
        assert key in values
    empty = dict(diagnostic_values(NodeStatistics().snapshot(0.0), {}))
    assert empty["inference p50 (ms)"] == "-"


def test_diagnostic_levels():
    stats = NodeStatistics()
    first = stats.snapshot(0.0)
    assert diagnostic_level(first, None, "loading model") == (WARN, "loading model")
    assert diagnostic_level(first, None, "error: model file not found")[0] == ERROR
    assert diagnostic_level(first, None, "running") == (OK, "waiting for images")
    stats.record_received(1.0)
    running = stats.snapshot(1.5)
    assert diagnostic_level(running, first, "running") == (OK, "running")
    stats.record_rejected("encoding")
    rejected = stats.snapshot(2.0)
    assert diagnostic_level(rejected, running, "running") == (
        WARN, "rejected 1 malformed messages")
    assert diagnostic_level(stats.snapshot(2.5), rejected, "running")[0] == OK
    stats.record_failed("x")
    assert diagnostic_level(stats.snapshot(3.0), rejected, "running")[0] == ERROR
    assert diagnostic_level(stats.snapshot(30.0), stats.snapshot(29.0), "running") == (
        WARN, "no image for 29 s")


def test_rate_limited_log_per_key():
    log = RateLimitedLog(period_s=5.0)
    assert log.allow("encoding", 0.0) == (True, 0)
    assert log.allow("encoding", 1.0) == (False, 0)
    assert log.allow("encoding", 2.0) == (False, 0)
    assert log.allow("step", 2.0) == (True, 0)  # another reason is not held back
    assert log.allow("encoding", 5.5) == (True, 2)  # and says how many it held
    assert log.allow("encoding", 6.0) == (False, 0)
