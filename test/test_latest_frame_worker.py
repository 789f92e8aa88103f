"""LatestFrameWorker: off-thread processing, newest-frame-only, errors do not stop it."""

from __future__ import annotations

import threading
import time

import pytest

from textseg.latest_frame_worker import LatestFrameWorker

TIMEOUT = 5.0


@pytest.fixture
def workers():
    started = []
    yield started
    for worker in started:
        worker.stop(timeout=TIMEOUT)


def _wait_until(condition, timeout: float = TIMEOUT) -> bool:
    """Poll a counter that is updated just after the event the test waited on."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_processes_off_caller_thread(workers):
    seen = []
    done = threading.Event()

    def process(item):
        seen.append((item, threading.current_thread()))
        done.set()

    worker = LatestFrameWorker(process, name="test-worker")
    workers.append(worker)
    worker.submit("a")
    assert done.wait(TIMEOUT)
    (item, thread), = seen
    assert item == "a"
    assert thread is not threading.current_thread()
    assert thread.name == "test-worker"
    assert _wait_until(lambda: worker.processed == 1)
    assert (worker.submitted, worker.dropped, worker.failed) == (1, 0, 0)


def test_slow_processing_keeps_only_newest(workers):
    started = threading.Event()
    release = threading.Event()
    seen = []
    all_done = threading.Event()

    def process(item):
        seen.append(item)
        if item == 0:
            started.set()
            assert release.wait(TIMEOUT)
        if item == 9:
            all_done.set()

    worker = LatestFrameWorker(process)
    workers.append(worker)
    worker.submit(0)
    assert started.wait(TIMEOUT)  # the worker is busy with item 0
    for item in range(1, 10):  # arrive faster than they can be processed
        worker.submit(item)
    release.set()
    assert all_done.wait(TIMEOUT)
    assert _wait_until(lambda: worker.processed == 2)
    assert seen == [0, 9]
    assert worker.submitted == 10
    assert worker.dropped == 8
    assert worker.submitted == worker.processed + worker.dropped + worker.failed


def test_error_calls_on_error_and_worker_continues(workers):
    errors = []
    error_seen = threading.Event()
    ok = threading.Event()

    def process(item):
        if item == "bad":
            raise RuntimeError("boom")
        ok.set()

    def on_error(exc):
        errors.append(exc)
        error_seen.set()

    worker = LatestFrameWorker(process, on_error=on_error)
    workers.append(worker)
    worker.submit("bad")
    assert error_seen.wait(TIMEOUT)
    worker.submit("good")
    assert ok.wait(TIMEOUT)
    assert _wait_until(lambda: worker.processed == 1)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert worker.last_error is errors[0]
    assert worker.failed == 1
    assert worker.submitted == worker.processed + worker.dropped + worker.failed


def test_error_without_handler_is_counted(workers):
    ok = threading.Event()

    def process(item):
        if item == "bad":
            raise ValueError("bad frame")
        ok.set()

    worker = LatestFrameWorker(process)
    workers.append(worker)
    worker.submit("bad")
    assert _wait_until(lambda: worker.failed == 1)
    worker.submit("good")
    assert ok.wait(TIMEOUT)
    assert isinstance(worker.last_error, ValueError)


def test_stop_joins_thread():
    worker = LatestFrameWorker(lambda item: None)
    assert worker.stop(timeout=TIMEOUT)
    assert not worker.is_alive()


def test_stop_says_when_an_item_outlasts_the_timeout_and_can_then_wait_for_it():
    started, release = threading.Event(), threading.Event()

    def process(item):
        started.set()
        release.wait(TIMEOUT)

    worker = LatestFrameWorker(process)
    worker.submit(1)
    assert started.wait(TIMEOUT)
    assert worker.stop(timeout=0.05) is False  # still inside process: resources stay in use
    assert worker.is_alive()
    threading.Timer(0.1, release.set).start()
    assert worker.stop(timeout=None) is True  # the node's _release waits like this
    assert not worker.is_alive()


def test_stop_waits_for_item_in_progress():
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def process(item):
        started.set()
        release.wait(TIMEOUT)
        finished.set()

    worker = LatestFrameWorker(process)
    worker.submit(1)
    assert started.wait(TIMEOUT)
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": TIMEOUT})
    stopper.start()
    release.set()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert finished.is_set()
    assert not worker.is_alive()


def test_several_sources_each_keep_their_newest_and_are_served_in_turn(workers):
    """Cameras: one slot per source; a busy worker then serves each waiting source's newest
    frame, longest-waiting source first, and drops are counted per source."""
    started, release = threading.Event(), threading.Event()
    seen = []

    def process(item):
        seen.append(item)
        if item == ("front", 0):
            started.set()
            assert release.wait(TIMEOUT)

    worker = LatestFrameWorker(process)
    workers.append(worker)
    worker.submit(("front", 0), source="front")
    assert started.wait(TIMEOUT)
    for i in range(1, 4):  # front floods; left and rear send one or two
        worker.submit(("front", i), source="front")
        if i == 1:
            worker.submit(("left", 1), source="left")
        if i >= 2:
            worker.submit(("rear", i), source="rear")
    release.set()
    assert _wait_until(lambda: worker.processed == 4)
    assert seen == [("front", 0), ("front", 3), ("left", 1), ("rear", 3)]
    assert worker.dropped_by_source == {"front": 2, "rear": 1}
    assert worker.submitted == worker.processed + worker.dropped


def test_a_flooding_source_cannot_starve_the_others(workers):
    gate = threading.Semaphore(0)
    seen = []

    def process(item):
        seen.append(item)
        assert gate.acquire(timeout=TIMEOUT)

    worker = LatestFrameWorker(process)
    workers.append(worker)
    for round_ in range(20):
        for source in ("a", "b"):
            worker.submit((source, round_), source=source)
        gate.release()
        time.sleep(0.002)
    for _ in range(5):
        gate.release()
    assert _wait_until(lambda: worker.processed >= 20)
    served = [source for source, _ in seen]
    assert abs(served.count("a") - served.count("b")) <= 1, served


def test_waiting_sources_are_handed_over_together_up_to_max_batch(workers):
    """Batching: the newest frames of up to max_batch waiting sources in one call, in turn
    order; per-item outcomes are counted (one failed frame does not fail the others)."""
    started, release = threading.Event(), threading.Event()
    singles, batches, errors = [], [], []

    def process(item):
        singles.append(item)
        if item == "front0":
            started.set()
            assert release.wait(TIMEOUT)

    def process_batch(items):
        batches.append(list(items))
        return [ValueError(item) if item == "left1" else None for item in items]

    worker = LatestFrameWorker(process, on_error=errors.append, process_batch=process_batch,
                               max_batch=2)
    workers.append(worker)
    worker.submit("front0", source="front")
    assert started.wait(TIMEOUT)
    for source in ("front", "left", "rear"):
        worker.submit(f"{source}1", source=source)
    release.set()
    assert _wait_until(lambda: worker.processed + worker.failed == 4)
    assert singles == ["front0", "rear1"]  # a lone waiting source goes through process
    assert batches == [["front1", "left1"]]
    assert (worker.processed, worker.failed) == (3, 1)
    assert [str(e) for e in errors] == ["left1"]
    assert worker.submitted == worker.processed + worker.failed + worker.dropped


def test_a_batch_that_raises_counts_every_frame_failed(workers):
    gate = threading.Event()

    def process(item):
        assert gate.wait(TIMEOUT)

    def process_batch(items):
        raise RuntimeError("device lost")

    worker = LatestFrameWorker(process, process_batch=process_batch, max_batch=4)
    workers.append(worker)
    worker.submit("first", source="a")
    time.sleep(0.05)  # "first" is in process, held by the gate
    for source in "bcd":
        worker.submit(source, source=source)
    gate.set()
    assert _wait_until(lambda: worker.processed + worker.failed == 4)
    assert (worker.processed, worker.failed) == (1, 3)
    assert str(worker.last_error) == "device lost"


def test_several_threads_run_items_at_once_even_from_one_source(workers):
    """threads=2: a camera's next frame starts while the previous one is still in progress."""
    both_started = threading.Barrier(2, timeout=TIMEOUT)
    names = set()

    def process(item):
        names.add(threading.current_thread().name)
        both_started.wait()  # only returns when two items are in progress together

    worker = LatestFrameWorker(process, name="infer", threads=2)
    workers.append(worker)
    worker.submit(1, source="front")
    assert _wait_until(lambda: len(names) == 1)
    worker.submit(2, source="front")
    assert _wait_until(lambda: worker.processed == 2)
    assert names == {"infer-0", "infer-1"}
    assert (worker.dropped, worker.failed) == (0, 0)
    worker.stop(timeout=TIMEOUT)
    assert not worker.is_alive()


def test_thread_count_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        LatestFrameWorker(lambda item: None, threads=0)
