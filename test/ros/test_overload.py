"""Overload at small scale: frames at 3x what the node can process, through real DDS.

The full-size measurement is `textseg overload` (30 s at 1280x720, numbers in the README);
this checks the structural properties quickly on the tiny model: the node drops frames
instead of queueing them, latency stays bounded and does not trend upwards, memory stays flat.
Bounds are generous multiples (CI machines are noisy), not the performance targets.
"""

from __future__ import annotations

import cv2
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from textseg.client.process import local_ros_environment  # noqa: E402
from textseg.engine import BackendOptions, load_backend  # noqa: E402
from textseg.ros_compat import DDS_PROFILE_VARIABLES  # noqa: E402
from textseg.tools.benchmark import bench_backend, run_overload  # noqa: E402

pytestmark = pytest.mark.ros


def test_three_times_overload_drops_frames_instead_of_queueing(tiny_model_path, camvid_frames,
                                                                monkeypatch):
    frames = [cv2.resize(rgb, (320, 240)) for _, rgb in camvid_frames(4)]
    backend = load_backend(tiny_model_path, BackendOptions(backend="onnxruntime", threads=1))
    capacity = bench_backend(backend, frames, 20).fps
    lines = []
    # The run sets these in os.environ for its in-process client: set them through
    # monkeypatch (real environment, so rclpy sees them; restored afterwards).
    env = local_ros_environment()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", *DDS_PROFILE_VARIABLES):
        monkeypatch.setenv(key, env[key])
    result = run_overload(str(tiny_model_path), size=(240, 320), factor=3.0, duration=8.0,
                          warmup=2.0, backend="onnxruntime", threads=1,
                          capacity_fps=capacity, frames=frames, out=lines.append)
    report = result.report()
    assert result.answered > 10, report
    assert result.dropped > 0, report  # newest frame only: the surplus is dropped
    assert result.published > 2 * result.answered, report
    # No queue: a frame waits at most for the one in progress. Generous bound for noisy CI.
    assert result.latency_p99_ms <= 4 * result.inference_p99_ms + 50, report
    assert result.late_p50_ms <= 2 * result.early_p50_ms + 20, report  # no upward trend
    assert abs(result.rss_growth) < 0.10, report
