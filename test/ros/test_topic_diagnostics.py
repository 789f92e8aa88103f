"""Why nothing arrives (issue: "the node publishes nothing"): incompatible QoS on the input and
on the outputs is logged, naming the other side's QoS, and counted in diagnostics; a camera
that stays silent gets one warning naming the topic the node listens on and the image topics
it can see. Real node process, real DDS, deliberately mismatched endpoints."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from textseg.client.frame_client import FrameClient  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402
from textseg.node.topic_watch import SilenceCheck, describe_qos  # noqa: E402

pytestmark = pytest.mark.ros


def _value(client: FrameClient, node_name: str, key: str, wanted, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.spin_for(0.2)
        entries = client.node_diagnostics(node_name)
        if entries and key in entries[0] and wanted(entries[0][key]):
            return entries[0][key]
    return None


def test_incompatible_qos_on_input_and_output_is_logged_and_counted(
        tiny_model_path, ros_env, ros_context):
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1,
                        "qos_reliability": "reliable", "diagnostics_period": 0.3,
                        "no_input_warning": 0.0}, env=ros_env, namespace="/qos").start()
    client = FrameClient(context=ros_context, image_topic="/qos/image",
                         labels_topic="/qos/labels/image", name="qos_client", diagnostics=True)
    other = Node("mismatched", context=ros_context)
    client.executor.add_node(other)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        # A best-effort camera cannot serve a reliable subscription ...
        other.create_publisher(Image, "/qos/image",
                               QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        # ... and a latched (transient local) listener cannot match our volatile outputs.
        other.create_subscription(Image, "/qos/labels/color", lambda msg: None,
                                  QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        name = "/qos/segmentation_node"
        assert _value(client, name, "input incompatible QoS events", lambda v: int(v) >= 1), \
            node.log_text()[-3000:]
        assert _value(client, name, "output incompatible QoS events", lambda v: int(v) >= 1), \
            node.log_text()[-3000:]
        assert client.wait_for(lambda: "incompatible QoS on /qos/labels/color" in
                               node.log_text(), 10.0), node.log_text()[-3000:]
        log = node.log_text()
        # Only the clashing endpoint is named (DDS discovery may not carry its node's name,
        # and never its history depth).
        assert ("incompatible QoS on /qos/image (reliability): our subscription [reliable, "
                "volatile, keep_last 1] cannot match: publisher of ") in log
        assert ("offers [best_effort, volatile]; set qos_reliability: best_effort (it accepts "
                "both) (1 so far)") in log
        assert "qos_client" not in log  # the reliable client's publisher matches: not named
        assert ("incompatible QoS on /qos/labels/color (durability): our publisher [reliable, "
                "volatile, keep_last 1] cannot match: subscription of ") in log
        assert "requests [reliable, transient_local]; subscribe with volatile durability" in log
    finally:
        client.executor.remove_node(other)
        other.destroy_node()
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def test_a_silent_camera_gets_one_warning_naming_the_topics_it_could_mean(
        tiny_model_path, ros_env, ros_context):
    camera = Node("real_camera", context=ros_context)  # a camera on another topic, up first
    camera.create_publisher(Image, "/front_camera/image_raw", 1)
    # 3 s: time for the node's discovery to see the camera before it reports
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "no_input_warning": 3.0,
                        "diagnostics_period": 0.2, "points": "depth"}, env=ros_env,
                       namespace="/quiet").start()
    expected = ("no image for 3 s: no publisher on /quiet/image; sensor_msgs/msg/Image topics "
                "this node can see: ")
    try:
        deadline = time.monotonic() + 60.0
        while expected not in node.log_text() and node.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert expected in node.log_text(), node.log_text()[-3000:]
        line = next(line for line in node.log_text().splitlines() if expected in line)
        assert "/front_camera/image_raw" in line, line  # the camera it probably means
        assert "(remap the node's input, e.g. image:=/your/camera/topic)" in line
        assert "/quiet/labels" not in line  # the node's own outputs are no camera
        assert "/quiet/depth/image" not in line  # nor its own inputs
        time.sleep(2.0)
        assert node.log_text().count("no image for") == 1  # once, not every second
    finally:
        camera.destroy_node()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def test_silence_check_warns_once_per_silence_and_again_after_the_camera_stops_again():
    check = SilenceCheck(after=5.0, since=100.0)
    assert not check.due(104.9)
    assert check.due(105.0) and not check.due(106.0)  # once
    check.heard(107.0)
    assert not check.due(111.0)
    assert check.due(112.5)  # stopped again: reported again
    assert not SilenceCheck(after=0.0, since=0.0).due(1e9)  # 0 = never


def test_describe_qos_reads_like_the_ros2_cli():
    profile = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    assert describe_qos(profile) == "reliable, transient_local, keep_last 5"
