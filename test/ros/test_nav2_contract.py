"""What Nav2's semantic_segmentation_layer requires of us, checked against a real node process
over real DDS: its subscriptions' QoS (SensorData for the class-id and confidence images; a
reliable, transient-local, depth-5 LabelInfo subscription), mono8 encodings, identical stamps
and frame ids of labels and confidence, and the class names it picks costs by.

The plugin itself (a C++ costmap layer) cannot run here; its subscriptions are reproduced with
rclpy's own QoS profiles. LabelInfo needs vision_msgs, which has no wheel: scripts/test.sh
builds its two messages with the ROS wheels' rosidl toolchain (scripts/build_vision_msgs.sh).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from rclpy.node import Node  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_check_compatible,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import Image  # noqa: E402

from textseg.client.frame_client import FrameClient  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402
from textseg.engine import load_backend  # noqa: E402

pytestmark = pytest.mark.ros

NAV2_PARAMS = Path(__file__).resolve().parents[2] / "config" / "nav2_segmentation.yaml"
# The plugin's LabelInfo subscription (ros.md: reliable, transient local, depth 5).
LABEL_INFO_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def nav2_node(tiny_model_path, ros_env, ros_context):
    # The documented parameter set for Nav2 users, with the test's small model.
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1}, params_file=NAV2_PARAMS,
                       env=ros_env, namespace="/nav2").start()
    client = FrameClient(context=ros_context, image_topic="/nav2/image",
                         labels_topic="/nav2/labels/image", name="nav2_client")
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        yield node, client
    finally:
        client.close()
        assert node.stop() == 0, node.log_text()[-2000:]


def test_publishers_are_compatible_with_the_plugins_sensor_data_subscriptions(nav2_node):
    _, client = nav2_node
    for topic in ("/nav2/labels/image", "/nav2/labels/confidence"):
        infos = client.node.get_publishers_info_by_topic(topic)
        assert len(infos) == 1, topic
        compatibility, reason = qos_check_compatible(infos[0].qos_profile,
                                                     qos_profile_sensor_data)
        # WARNING only flags "system default" policies the profile leaves to the middleware.
        assert compatibility != rclpy.qos.QoSCompatibility.ERROR, f"{topic}: {reason}"
        assert infos[0].topic_type == "sensor_msgs/msg/Image"


def test_labels_and_confidence_arrive_mono8_with_identical_headers(nav2_node, camvid_frames,
                                                                   tiny_model_path,
                                                                   ros_context):
    node, client = nav2_node
    received: dict[str, list[Image]] = {"labels": [], "confidence": []}
    listener = Node("nav2_listener", context=ros_context)
    client.executor.add_node(listener)  # spun with the client
    for key, topic in (("labels", "/nav2/labels/image"), ("confidence", "/nav2/labels/confidence")):
        listener.create_subscription(Image, topic, received[key].append,
                                     qos_profile_sensor_data)
    try:
        (_, rgb), = camvid_frames(1)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not (received["labels"]
                                                   and received["confidence"]):
            # best effort: resend until both streams delivered one frame
            msg = client.image_message(rgb, "rgb8", client.node.get_clock().now().to_msg(),
                                       "camera_front")
            client.publish(msg)
            client.spin_for(0.5)
        assert received["labels"] and received["confidence"], node.log_text()[-2000:]
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in received["labels"]}
        pairs = [(stamps[(c.header.stamp.sec, c.header.stamp.nanosec)], c)
                 for c in received["confidence"]
                 if (c.header.stamp.sec, c.header.stamp.nanosec) in stamps]
        assert pairs, "no labels/confidence pair with the same stamp (exact-time sync fails)"
        labels, confidence = pairs[0]
        assert labels.encoding == confidence.encoding == "mono8"
        assert labels.header.frame_id == confidence.header.frame_id == "camera_front"
        assert (labels.height, labels.width) == rgb.shape[:2]
        assert (confidence.height, confidence.width) == rgb.shape[:2]
        ids = np.frombuffer(labels.data, np.uint8).reshape(rgb.shape[:2])
        # the model's labels through the documented grouping, and its confidence unchanged
        backend = load_backend(tiny_model_path)
        try:
            model = backend.infer(rgb, want_confidence=True)
            names = backend.info.class_names
        finally:
            backend.close()
        group = {"road": 0, "sidewalk": 1, "sky": 3}
        expected = np.array([group.get(name, 2) for name in names], np.uint8)[model.labels]
        assert (ids == expected).all()
        assert (np.frombuffer(confidence.data, np.uint8).reshape(rgb.shape[:2])
                == model.confidence).all()
    finally:
        client.executor.remove_node(listener)
        listener.destroy_node()


def test_label_info_is_latched_before_segmentation_starts(nav2_node, ros_context,
                                                          vision_msgs_module):
    """LabelInfo (vision_msgs) reaches a late, transient-local subscriber: the plugin picks
    costs by class name and ignores segmentation until it has it."""
    LabelInfo = vision_msgs_module.LabelInfo  # noqa: N806 - a message class

    _, client = nav2_node
    got = []
    listener = Node("nav2_label_info", context=ros_context)
    listener.create_subscription(LabelInfo, "/nav2/label_info", got.append, LABEL_INFO_QOS)
    client.executor.add_node(listener)
    try:
        assert client.wait_for(lambda: bool(got), 10.0)
        # the documented grouping (config/nav2_segmentation.yaml), in output id order
        assert [(c.class_id, c.class_name) for c in got[0].class_map] == [
            (0, "drivable"), (1, "caution"), (2, "obstacle"), (3, "sky")]
    finally:
        client.executor.remove_node(listener)
        listener.destroy_node()


def test_label_info_arrives_before_the_first_labels(tiny_model_path, ros_env, ros_context,
                                                    vision_msgs_module, camvid_frames):
    """Subscribed before the node starts, LabelInfo comes first: the node publishes it when it
    configures, before it takes any image."""
    order: list[str] = []
    listener = Node("nav2_order_listener", context=ros_context)
    listener.create_subscription(vision_msgs_module.LabelInfo, "/order/label_info",
                                 lambda msg: order.append("label_info"), LABEL_INFO_QOS)
    listener.create_subscription(Image, "/order/labels/image", lambda msg: order.append("labels"),
                                 qos_profile_sensor_data)
    client = FrameClient(context=ros_context, image_topic="/order/image",
                         labels_topic="/order/labels/image", name="order_client")
    client.executor.add_node(listener)
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1}, params_file=NAV2_PARAMS,
                       env=ros_env, namespace="/order").start()
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        # Before any image is sent, LabelInfo arrives (transient local, published at start):
        # waited for, since its durable sample follows its own match, which may come after
        # the image topics' on a loaded machine.
        assert client.wait_for(lambda: "label_info" in order, 20.0), node.log_text()[-2000:]
        (_, rgb), = camvid_frames(1)
        msg = client.image_message(rgb, "rgb8", client.node.get_clock().now().to_msg(), "cam")
        assert client.exchange(msg, timeout=20.0) is not None, node.log_text()[-2000:]
        assert client.wait_for(lambda: "labels" in order, 5.0)
        assert order[0] == "label_info", order[:5]
    finally:
        client.executor.remove_node(listener)
        listener.destroy_node()
        client.close()
        assert node.stop() == 0, node.log_text()[-2000:]


def test_without_vision_msgs_the_node_says_why_and_still_segments(tiny_model_path, ros_env,
                                                                  ros_context, camvid_frames):
    import importlib.util
    import os

    built = os.environ.get("TEXTSEG_VISION_MSGS")  # scripts/build_vision_msgs.sh's prefix
    if not built and importlib.util.find_spec("vision_msgs") is not None:
        pytest.skip("vision_msgs is installed with ROS itself here: it cannot be hidden")
    env = dict(ros_env)
    env["PYTHONPATH"] = ":".join(p for p in env.get("PYTHONPATH", "").split(":")
                                 if p and not (built and p.startswith(built)))
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1}, params_file=NAV2_PARAMS,
                       env=env, namespace="/plain").start()
    client = FrameClient(context=ros_context, image_topic="/plain/image",
                         labels_topic="/plain/labels/image", name="plain_client")
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        (_, rgb), = camvid_frames(1)
        msg = client.image_message(rgb, "rgb8", client.node.get_clock().now().to_msg(), "cam")
        assert client.exchange(msg, timeout=20.0) is not None, node.log_text()[-2000:]
        assert not client.node.get_publishers_info_by_topic("/plain/label_info")
    finally:
        client.close()
        assert node.stop() == 0, node.log_text()[-2000:]
    assert "vision_msgs is not installed" in node.log_text()


def test_a_bad_class_grouping_stops_the_node_naming_the_entry(tiny_model_path, ros_env):
    node = NodeProcess({"model": str(tiny_model_path), "class_groups": ["drivable: road, lawn"]},
                       env=ros_env, namespace="/badgroups").start()
    code = node.exit_code(timeout=30.0)
    assert code == 1, node.log_text()[-2000:]
    assert "['lawn'] not among the model's classes" in node.log_text()


def test_a_plain_camera_feeds_the_layer_through_labels_points(tiny_model_path, ros_env,
                                                              ros_context, camvid_frames):
    """docs/nav2.md's plain-camera set-up: the layer's point cloud is our labels/points (ground
    mode), exactly aligned with the labels: same stamp and frame, organized at the labels' size,
    a publisher its SensorData subscription matches."""
    from sensor_msgs.msg import CameraInfo, PointCloud2

    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "points": "ground",
                        "ground_height": 1.2, "ground_pitch": 0.1,
                        "ground_standing_classes": ["obstacle"]},
                       params_file=NAV2_PARAMS, env=ros_env, namespace="/plain").start()
    client = FrameClient(context=ros_context, image_topic="/plain/image",
                         labels_topic="/plain/labels/image", name="plain_client")
    listener = Node("plain_layer", context=ros_context)
    clouds, labels = {}, {}
    for topic, kind, store in (("/plain/labels/points", PointCloud2, clouds),
                               ("/plain/labels/image", Image, labels)):
        listener.create_subscription(
            kind, topic, lambda msg, s=store: s.__setitem__(
                (msg.header.stamp.sec, msg.header.stamp.nanosec), msg), qos_profile_sensor_data)
    info_pub = listener.create_publisher(CameraInfo, "/plain/camera_info", 10)
    client.executor.add_node(listener)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        (pub,) = client.node.get_publishers_info_by_topic("/plain/labels/points")
        compatibility, reason = qos_check_compatible(pub.qos_profile, qos_profile_sensor_data)
        assert compatibility != rclpy.qos.QoSCompatibility.ERROR, reason
        (_, rgb), = camvid_frames(1)
        deadline = time.monotonic() + 30.0
        common = set()
        while time.monotonic() < deadline and not common:
            stamp = client.node.get_clock().now().to_msg()
            info = CameraInfo()
            info.header.stamp, info.height, info.width = stamp, *rgb.shape[:2]
            info.k = [400.0, 0.0, 240.0, 0.0, 400.0, 180.0, 0.0, 0.0, 1.0]
            info_pub.publish(info)
            client.spin_for(0.1)
            client.publish(client.image_message(rgb, "rgb8", stamp, "camera_front"))
            client.spin_for(0.7)
            common = set(clouds) & set(labels)
        assert common, node.log_text()[-3000:]
        key = sorted(common)[-1]
        cloud, label_image = clouds[key], labels[key]
        assert cloud.header == label_image.header  # exact-time sync pairs them
        assert cloud.header.frame_id == "camera_front"
        assert (cloud.height, cloud.width) == (label_image.height, label_image.width)
        ids = np.frombuffer(bytes(label_image.data), np.uint8)
        in_cloud = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, 16)[:, 12]
        assert (in_cloud == ids).all()  # pixel-aligned: the same class at every index
    finally:
        client.executor.remove_node(listener)
        listener.destroy_node()
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]
