"""What segmentation_node puts on /diagnostics, built without ROS, and the rate-limited log
its per-frame problems go through."""

from __future__ import annotations

from dataclasses import replace

from textseg.node.diagnostics import (
    CameraStatus,
    NodeReport,
    camera_status,
    input_description,
    points_values,
    topic_event_values,
)
from textseg.node.throttled_log import ThrottledLog
from textseg.stats import ERROR, OK, WARN, NodeStatistics

REPORT = NodeReport(state="running", backend="onnxruntime CPU fp32", model="/m/tiny.onnx",
                    classes=11, self_check="self-check passed", frames_per_inference=2,
                    batched_inferences=5, input=input_description("raw", "best_effort", 1))


def _stats_with_one_frame() -> NodeStatistics:
    stats = NodeStatistics()
    stats.record_received(0.0)
    stats.record_frame(0.05, 0.02, 0.01, 0.05)
    return stats


def test_a_camera_status_names_the_node_then_the_topics_then_the_statistics():
    snapshot = _stats_with_one_frame().snapshot(0.1, dropped=1)
    topics = {**points_values(3, [0.002, 0.001, 0.004], {"no camera_info": 2}),
              **topic_event_values(1, 0, 2)}
    status = camera_status("/ns/segmentation_node", "front", snapshot, None, REPORT, topics)
    assert isinstance(status, CameraStatus)
    assert (status.level, status.message) == (OK, "running")
    assert status.name == "/ns/segmentation_node: segmentation front"
    assert status.hardware_id == "onnxruntime CPU fp32"
    keys = [key for key, _ in status.values]
    assert keys[:13] == [
        "state", "backend", "model", "classes", "self-check", "frames per inference (max)",
        "batched inferences", "input", "camera", "points published", "points p50 (ms)",
        "points skipped: no camera_info", "input incompatible QoS events"]
    values = dict(status.values)
    assert values["input"] == "raw (best_effort, depth 1)"
    assert values["classes"] == "11" and values["batched inferences"] == "5"
    assert values["points p50 (ms)"] == "2.00"
    assert values["output incompatible QoS events"] == "0"
    assert values["incompatible type events"] == "2"
    assert values["frames dropped"] == "1" and values["frames processed"] == "1"


def test_the_single_camera_status_has_no_camera_key():
    snapshot = NodeStatistics().snapshot(0.0)
    status = camera_status("/segmentation_node", "", snapshot, None, REPORT, {})
    assert status.name == "/segmentation_node: segmentation"
    assert "camera" not in dict(status.values)
    assert status.message == "waiting for images"


def test_the_level_follows_the_state_and_new_failures():
    loading = replace(REPORT, state="loading model")
    snapshot = NodeStatistics().snapshot(0.0)
    assert camera_status("/n", "", snapshot, None, loading, {}).level == WARN
    failed = replace(REPORT, state="error: model file not found")
    status = camera_status("/n", "", snapshot, None, failed, {})
    assert (status.level, status.message) == (ERROR, "error: model file not found")
    stats = _stats_with_one_frame()
    before = stats.snapshot(0.1)
    stats.record_failed("RuntimeError: boom")
    status = camera_status("/n", "", stats.snapshot(0.2), before, REPORT, {})
    assert (status.level, status.message) == (ERROR, "inference failed 1 times")


def test_points_values_without_clouds():
    assert points_values(0, [], {}) == {"points published": "0", "points p50 (ms)": "-"}


def test_throttled_log_writes_one_line_per_key_per_period_and_counts_the_rest():
    now = [0.0]
    lines: list[str] = []
    log = ThrottledLog(5.0, clock=lambda: now[0])
    assert log(lines.append, "encoding", "rejected image (encoding): yuv")
    assert not log(lines.append, "encoding", "rejected image (encoding): yuv")
    assert log(lines.append, "inference", "inference failed: boom")  # another key
    now[0] = 1.0
    log(lines.append, "encoding", "again")
    now[0] = 6.0
    log(lines.append, "encoding", "rejected image (encoding): yuv",
        held_back="more like it since the last message")
    log(lines.append, "inference", "inference failed: boom")
    assert lines == ["rejected image (encoding): yuv", "inference failed: boom",
                     "rejected image (encoding): yuv (2 more like it since the last message)",
                     "inference failed: boom"]
