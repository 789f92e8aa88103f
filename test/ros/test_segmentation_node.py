"""segmentation_node end to end: a real node process, real DDS, real CamVid frames.

The test process publishes frames and subscribes to the labels; the node runs in its own
process (started and stopped by PID). Traffic stays on this machine.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from textseg.client.frame_client import FrameClient, stamp_key  # noqa: E402
from textseg.client.process import NodeProcess, serving  # noqa: E402
from textseg.engine import (  # noqa: E402
    BackendOptions,
    default_model_path,
    load_backend,
    package_share_dir,
)
from textseg.imaging import compressed_to_rgb, image_to_rgb  # noqa: E402

pytestmark = pytest.mark.ros
_stamps = itertools.count(1)


def _stamp() -> Time:
    n = next(_stamps)
    return Time(sec=1_600_000_000 + n, nanosec=(n * 7919) % 1_000_000_000)


OUTPUTS = {"labels/color": Image, "labels/overlay": Image, "labels/confidence": Image}


@pytest.fixture(scope="module")
def running_node(tiny_model_path, ros_env, ros_context):
    """One node for the module; threads=1 so the reference backend computes bit-identically."""
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1,
                        "publish_confidence": True, "overlay_alpha": 0.5,
                        "diagnostics_period": 0.3}, env=ros_env).start()
    client = FrameClient(context=ros_context, outputs=OUTPUTS, diagnostics=True)
    with serving(node, client) as running:
        yield running


@pytest.fixture(scope="module")
def reference_backend(tiny_model_path):
    return load_backend(tiny_model_path, BackendOptions(threads=1))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8", "bgra8"])
def test_every_reply_keeps_header_size_and_matches_the_backend(
        encoding, running_node, reference_backend, camvid_frames):
    node, client = running_node
    num_classes = reference_backend.info.num_classes
    for name, rgb in camvid_frames(3):
        frame_id = f"cam_{encoding}"
        sent = client.image_message(rgb, encoding, _stamp(), frame_id)
        reply = client.exchange(sent, timeout=20.0)
        assert reply is not None, f"no labels for {name} ({encoding}):\n{node.log_text()[-2000:]}"
        labels_msg, _ = reply
        assert labels_msg.header.stamp == sent.header.stamp
        assert labels_msg.header.frame_id == frame_id
        assert (labels_msg.height, labels_msg.width) == (sent.height, sent.width)
        assert labels_msg.encoding == "mono8"
        assert labels_msg.step == labels_msg.width
        labels = np.frombuffer(labels_msg.data, np.uint8).reshape(sent.height, sent.width)
        assert labels.max() < num_classes
        # What the node saw: the frame decoded from the message (mono8 loses colour).
        seen = image_to_rgb(encoding, sent.height, sent.width, sent.step, sent.data)
        expected = reference_backend.infer(seen).labels
        np.testing.assert_array_equal(labels, expected, err_msg=f"{name} {encoding}")


def test_row_padding_is_honoured(running_node, reference_backend, camvid_frames):
    node, client = running_node
    (_, rgb), = camvid_frames(1)
    h, w, _ = rgb.shape
    padded = np.zeros((h, w * 3 + 64), np.uint8)
    padded[:, : w * 3] = rgb.reshape(h, w * 3)
    padded[:, w * 3:] = 255  # garbage in the padding must be ignored
    msg = client.image_message(rgb, "rgb8", _stamp(), "padded")
    msg.step, msg.data = w * 3 + 64, padded.tobytes()
    labels_msg, _ = client.exchange(msg, timeout=20.0)
    labels = np.frombuffer(labels_msg.data, np.uint8).reshape(h, w)
    np.testing.assert_array_equal(labels, reference_backend.infer(rgb).labels)


def test_bad_message_is_rejected_and_the_node_keeps_serving(running_node, camvid_frames):
    node, client = running_node
    (_, rgb), = camvid_frames(1)
    bad = client.image_message(rgb, "rgb8", _stamp(), "bad")
    bad.encoding = "yuv422"
    assert client.exchange(bad, timeout=2.0) is None
    truncated = client.image_message(rgb, "rgb8", _stamp(), "bad")
    truncated.data = truncated.data[:-100]
    assert client.exchange(truncated, timeout=2.0) is None
    good = client.image_message(rgb, "rgb8", _stamp(), "good")
    assert client.exchange(good, timeout=20.0) is not None
    assert node.alive()
    log = node.log_text()
    assert "unsupported encoding 'yuv422'" in log


def _answers_one_frame(node: NodeProcess, ros_context, rgb: np.ndarray, encoding: str,
                       **client_options) -> None:
    """One frame to a started node through a FrameClient on the given topics; it must answer."""
    client = FrameClient(context=ros_context, **client_options)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        msg = client.image_message(rgb, encoding, _stamp(), client_options["name"])
        assert client.exchange(msg, timeout=20.0) is not None, node.log_text()[-2000:]
    finally:
        client.close()


def test_topics_are_relative_and_remappable(tiny_model_path, ros_env, ros_context, camvid_frames):
    (_, rgb), = camvid_frames(1)
    remap = {"image": "front/image_raw", "labels/image": "front/labels"}
    with NodeProcess({"model": str(tiny_model_path)}, remappings=remap,
                     env=ros_env, node_name="front_segmentation") as node:
        _answers_one_frame(node, ros_context, rgb, "rgb8", image_topic="front/image_raw",
                           labels_topic="front/labels", name="remap_client")


def test_node_starts_with_no_parameters_on_the_default_artifact(ros_env, ros_context,
                                                               camvid_frames):
    model = default_model_path()
    if not model.is_file():
        pytest.skip(f"default artifact {model} not exported yet (scripts/setup.sh does it)")
    (_, rgb), = camvid_frames(1)
    with NodeProcess(env=ros_env, namespace="/defaults") as node:
        _answers_one_frame(node, ros_context, rgb, "rgb8", image_topic="/defaults/image",
                           labels_topic="/defaults/labels/image", name="defaults_client")
    assert str(model) in node.log_text()


def test_shipped_params_file_loads(tiny_model_path, ros_env, ros_context, camvid_frames):
    (_, rgb), = camvid_frames(1)
    params_file = package_share_dir() / "config" / "segmentation.yaml"
    with NodeProcess({"model": str(tiny_model_path)}, params_file=params_file,
                     env=ros_env, namespace="/params") as node:
        _answers_one_frame(node, ros_context, rgb, "bgr8", image_topic="/params/image",
                           labels_topic="/params/labels/image", name="params_client")
    assert "[best_effort, depth 1]" in node.log_text()


# --- optional outputs, diagnostics --------------------------------------------------------

def test_color_overlay_and_confidence_keep_the_header(running_node, reference_backend,
                                                      camvid_frames):
    node, client = running_node
    (_, rgb), = camvid_frames(1)
    h, w, _ = rgb.shape
    sent = client.image_message(rgb, "rgb8", _stamp(), "cam_outputs")
    reply = client.exchange(sent, timeout=20.0)
    assert reply is not None, node.log_text()[-2000:]
    key = stamp_key(sent)
    assert client.wait_for(lambda: all(key in client.outputs[t] for t in OUTPUTS), 10.0)
    labels = np.frombuffer(reply[0].data, np.uint8).reshape(h, w)
    messages = {topic: client.outputs[topic][key][0] for topic in OUTPUTS}
    for topic, msg in messages.items():
        assert msg.header.stamp == sent.header.stamp, topic
        assert msg.header.frame_id == "cam_outputs", topic
        assert (msg.height, msg.width) == (h, w), topic
    color_msg = messages["labels/color"]
    assert color_msg.encoding == "rgb8" and color_msg.step == 3 * w
    color = np.frombuffer(color_msg.data, np.uint8).reshape(h, w, 3)
    palette = np.array(reference_backend.info.palette, np.uint8)
    np.testing.assert_array_equal(color, palette[labels])
    overlay = np.frombuffer(messages["labels/overlay"].data, np.uint8).reshape(h, w, 3)
    expected = 0.5 * color.astype(float) + 0.5 * rgb.astype(float)
    assert np.abs(overlay.astype(float) - expected).max() <= 1
    confidence_msg = messages["labels/confidence"]
    assert confidence_msg.encoding == "mono8"
    confidence = np.frombuffer(confidence_msg.data, np.uint8).reshape(h, w)
    np.testing.assert_array_equal(
        confidence, reference_backend.infer(rgb, want_confidence=True).confidence)


def _diagnostics_when(client, node_name, condition, timeout=10.0):
    """The node's newest diagnostics once `condition(values)` holds (None on timeout)."""
    found = []

    def check():
        entry = client.node_diagnostics(node_name)
        if entry is not None and condition(entry[0]):
            found.append(entry)
            return True
        return False

    client.wait_for(check, timeout)
    return found[0] if found else None


def test_diagnostics_report_rates_latencies_and_rejections(running_node, tiny_model_path,
                                                           camvid_frames):
    node, client = running_node
    (_, rgb), = camvid_frames(1)
    for _ in range(2):
        assert client.exchange(client.image_message(rgb, "rgb8", _stamp(), "d"), 20.0)
    bad_step = client.image_message(rgb, "rgb8", _stamp(), "d")
    bad_step.step = 5
    client.publish(bad_step)
    entry = _diagnostics_when(client, "/segmentation_node",
                              lambda v: int(v.get("rejected: step", 0)) >= 1)
    assert entry is not None, f"no diagnostics with the rejection:\n{node.log_text()[-2000:]}"
    values, status, stamp = entry
    assert status.name == "/segmentation_node: segmentation"
    assert values["backend"].startswith("onnxruntime")
    assert values["model"] == str(tiny_model_path)
    assert values["state"] == "running"
    assert int(values["frames processed"]) >= 2
    assert int(values["messages rejected"]) >= 1
    for key in ("inference p50 (ms)", "inference p99 (ms)", "end-to-end p50 (ms)",
                "end-to-end p99 (ms)", "node overhead p50 (ms)", "input rate (Hz)",
                "output rate (Hz)"):
        assert float(values[key]) >= 0.0, key
    assert float(values["end-to-end p50 (ms)"]) >= float(values["inference p50 (ms)"]) * 0.5
    assert stamp.sec > 0  # stamped with the node's clock (wall time here)


def test_parallel_inferences_answer_every_frame_right_and_in_the_input_order(
        tiny_model_path, ros_env, ros_context, reference_backend, camvid_frames):
    """parallel_inferences 2 on 2 threads: two ONNX Runtime sessions of one thread each (so
    bit-identical to the reference), labels arrive in the input's order, and every message is
    accounted for (processed, dropped while waiting, skipped while the node saw no
    subscriber yet, or dropped as late)."""
    node = NodeProcess({"model": str(tiny_model_path), "threads": 2, "parallel_inferences": 2,
                        "diagnostics_period": 0.3}, env=ros_env, namespace="/parallel").start()
    client = FrameClient(context=ros_context, image_topic="/parallel/image",
                         labels_topic="/parallel/labels/image", name="parallel_client",
                         diagnostics=True)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        frames = [rgb for _, rgb in camvid_frames(4)]
        sent = {}
        for i in range(24):
            msg = client.image_message(frames[i % 4], "rgb8", _stamp(), "parallel")
            client.publish(msg)
            sent[stamp_key(msg)] = frames[i % 4]
            client.spin_for(0.02)

        client.spin_for(2.0)  # the last frames through

        def settled(values) -> bool:  # every message that reached the node accounted for
            received = int(values["messages received"])
            return received >= 2 and received == sum(
                int(values[key]) for key in ("frames processed", "frames dropped",
                                             "frames skipped (no subscribers)",
                                             "results dropped as late (a newer frame's went "
                                             "out first)"))

        entry = _diagnostics_when(client, "/parallel/segmentation_node", settled, timeout=30.0)
        last = client.node_diagnostics("/parallel/segmentation_node")
        assert entry is not None, f"{last and last[0]}\n{node.log_text()[-3000:]}"
        values = entry[0]
        assert values["backend"].endswith("x 2 sessions in parallel"), values["backend"]
        assert int(values["inference failures"]) == 0 and int(values["messages rejected"]) == 0
        order = list(sent)
        arrived = [order.index(key) for key in client.received]
        assert arrived == sorted(arrived) and len(arrived) == int(values["frames processed"])
        assert len(arrived) >= 2
        for key, (msg, _) in client.received.items():
            rgb = sent[key]
            labels = np.frombuffer(msg.data, np.uint8).reshape(rgb.shape[:2])
            np.testing.assert_array_equal(labels, reference_backend.infer(rgb).labels)
        assert "2 inferences in parallel, 1 ONNX Runtime thread(s) each" in node.log_text()
        # A bag replayed again: older stamps are answered, not taken for late results.
        rewound = client.image_message(frames[0], "rgb8", Time(sec=1_000, nanosec=0), "again")
        assert client.exchange(rewound, timeout=20.0) is not None, node.log_text()[-2000:]
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def test_outputs_are_skipped_without_subscribers_and_absent_when_disabled(
        tiny_model_path, ros_env, ros_context, camvid_frames):
    (_, rgb), = camvid_frames(1)
    with NodeProcess({"model": str(tiny_model_path), "publish_overlay": False,
                      "diagnostics_period": 0.3}, env=ros_env, namespace="/lazy") as node:
        client = FrameClient(context=ros_context, image_topic="/lazy/image",
                             labels_topic="/lazy/nobody_listens_here", name="lazy_client",
                             diagnostics=True)
        try:
            assert client.wait_for(lambda: client.publisher.get_subscription_count() > 0
                                   and client.node.count_publishers("/lazy/labels/image") > 0, 60)
            # Best effort right after discovery may lose the first frames: keep sending
            # until the node reports a skip (or give up after 20 frames).
            entry = None
            for _ in range(20):
                client.publish(client.image_message(rgb, "rgb8", _stamp(), "lazy"))
                entry = _diagnostics_when(
                    client, "/lazy/segmentation_node",
                    lambda v: int(v.get("frames skipped (no subscribers)", 0)) >= 1, 1.0)
                if entry is not None:
                    break
            assert entry is not None, node.log_text()[-2000:]
            assert entry[0]["frames processed"] == "0"
            assert client.node.count_publishers("/lazy/labels/color") == 1
            assert client.node.count_publishers("/lazy/labels/overlay") == 0  # disabled
            assert client.node.count_publishers("/lazy/labels/confidence") == 0
        finally:
            client.close()


# --- compressed input, output_scale, camera_info ------------------------------------------

@pytest.fixture(scope="module")
def compressed_node(tiny_model_path, ros_env, ros_context):
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "transport": "compressed",
                        "output_scale": 0.5, "camera_info": True},
                       env=ros_env, namespace="/zip").start()
    client = FrameClient(context=ros_context, image_topic="/zip/image/compressed",
                         labels_topic="/zip/labels/image", transport="compressed",
                         name="zip_client",
                         outputs={"/zip/labels/camera_info": CameraInfo})
    info_pub = client.node.create_publisher(CameraInfo, "/zip/camera_info", 10)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        yield node, client, info_pub
    finally:
        client.close()
        code = node.stop()
        assert code == 0, f"node did not exit cleanly ({code}):\n{node.log_text()[-2000:]}"


def test_every_output_image_has_its_own_sibling_camera_info(compressed_node):
    """image_transport's consumers (RViz's Camera display, image_proc, CameraSubscriber) look
    for camera_info beside the image topic: each labels/* image must find labels/camera_info,
    never the input's full-size camera_info."""
    node, client, _ = compressed_node
    published = {}

    def discovered() -> bool:
        try:  # the graph may not list the node by name yet
            published.update(client.node.get_publisher_names_and_types_by_node(
                "segmentation_node", "/zip"))
        except Exception:  # noqa: BLE001 - rclpy's NodeNameNonExistentError
            return False
        return "/zip/labels/camera_info" in published

    assert client.wait_for(discovered, 10.0), published
    images = [t for t, types in published.items() if "sensor_msgs/msg/Image" in types]
    assert "/zip/labels/image" in images and len(images) >= 3, images
    for topic in images:
        sibling = topic.rsplit("/", 1)[0] + "/camera_info"
        assert sibling == "/zip/labels/camera_info", topic
        assert "sensor_msgs/msg/CameraInfo" in published[sibling]


def _camera_info(width, height):
    info = CameraInfo()
    info.width, info.height = width, height
    info.distortion_model = "plumb_bob"
    info.d = [0.1, -0.2, 0.0, 0.0, 0.0]
    info.k = [400.0, 0.0, 240.0, 0.0, 410.0, 180.0, 0.0, 0.0, 1.0]
    info.p = [400.0, 0.0, 240.0, 0.0, 0.0, 410.0, 180.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_frames_are_answered_at_the_output_scale(fmt, compressed_node,
                                                            reference_backend, camvid_frames):
    node, client, info_pub = compressed_node
    (_, rgb), = camvid_frames(1)
    assert client.wait_for(lambda: info_pub.get_subscription_count() > 0, 10.0)
    for _ in range(3):  # best effort: the first sample after matching may be lost
        info_pub.publish(_camera_info(480, 360))
        client.spin_for(0.1)
    msg = client.compressed_message(rgb, _stamp(), "zip_cam", fmt)
    reply = client.exchange(msg, timeout=20.0)
    assert reply is not None, node.log_text()[-2000:]
    labels_msg, _ = reply
    assert (labels_msg.height, labels_msg.width) == (180, 240)
    assert labels_msg.header.stamp == msg.header.stamp
    assert labels_msg.header.frame_id == "zip_cam"
    decoded = compressed_to_rgb(msg.data)
    small = cv2.resize(decoded, (240, 180), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(
        np.frombuffer(labels_msg.data, np.uint8).reshape(180, 240),
        reference_backend.infer(small).labels)
    key = stamp_key(msg)
    infos = client.outputs["/zip/labels/camera_info"]
    assert client.wait_for(lambda: key in infos, 10.0)
    info = infos[key][0]
    assert (info.width, info.height) == (240, 180)
    assert info.header.frame_id == "zip_cam" and info.header.stamp == msg.header.stamp
    assert list(info.k) == [200.0, 0.0, 120.0, 0.0, 205.0, 90.0, 0.0, 0.0, 1.0]
    assert list(info.d) == [0.1, -0.2, 0.0, 0.0, 0.0]


def test_compressed_rgb8_payload_is_not_colour_swapped(compressed_node, reference_backend,
                                                       camvid_frames):
    """format "rgb8; png compressed rgb8": the codec was given RGB order, so the node must not
    swap channels (image_transport's compressed subscriber reads the format the same way)."""
    node, client, _ = compressed_node
    (_, rgb), = camvid_frames(1)
    msg = client.compressed_message(rgb, _stamp(), "zip_cam", "png")
    ok, data = cv2.imencode(".png", rgb)  # RGB pixels handed to the codec as they are
    assert ok
    msg.format, msg.data = "rgb8; png compressed rgb8", data.tobytes()
    reply = client.exchange(msg, timeout=20.0)
    assert reply is not None, node.log_text()[-2000:]
    labels_msg, _ = reply
    small = cv2.resize(rgb, (240, 180), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(
        np.frombuffer(labels_msg.data, np.uint8).reshape(180, 240),
        reference_backend.infer(small).labels)


def test_binning_and_roi_are_folded_into_the_labels_camera_info(compressed_node,
                                                                camvid_frames):
    """A 2x-binned ROI camera: the 480x360 frames are the binned ROI of a larger sensor.
    labels/camera_info describes the 240x180 labels: binning and ROI folded into K and P."""
    node, client, info_pub = compressed_node
    (_, rgb), = camvid_frames(1)
    info = _camera_info(1600, 1200)  # the full sensor
    info.binning_x = info.binning_y = 2
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 160, 120, 960, 720
    info.k = [800.0, 0.0, 800.0, 0.0, 820.0, 600.0, 0.0, 0.0, 1.0]
    info.p = [800.0, 0.0, 800.0, -40.0, 0.0, 820.0, 600.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    for _ in range(3):
        info_pub.publish(info)
        client.spin_for(0.1)
    msg = client.compressed_message(rgb, _stamp(), "zip_cam", "png")
    assert client.exchange(msg, timeout=20.0) is not None, node.log_text()[-2000:]
    key = stamp_key(msg)
    infos = client.outputs["/zip/labels/camera_info"]
    assert client.wait_for(lambda: key in infos, 10.0)
    out = infos[key][0]
    assert (out.width, out.height, out.binning_x, out.binning_y) == (240, 180, 0, 0)
    assert (out.roi.x_offset, out.roi.y_offset, out.roi.width, out.roi.height) == (0, 0, 0, 0)
    # sensor -> binned ROI (480x360): fx 400, cx (800-160)/2 = 320; -> labels (x0.5): 200, 160
    assert list(out.k) == [200.0, 0.0, 160.0, 0.0, 205.0, 120.0, 0.0, 0.0, 1.0]
    assert list(out.p) == [200.0, 0.0, 160.0, -10.0, 0.0, 205.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    for _ in range(3):  # back to the plain camera for the tests that follow
        info_pub.publish(_camera_info(480, 360))
        client.spin_for(0.1)


def test_corrupt_compressed_data_is_rejected_and_the_node_keeps_serving(compressed_node,
                                                                        camvid_frames):
    node, client, _ = compressed_node
    (_, rgb), = camvid_frames(1)
    good = client.compressed_message(rgb, _stamp(), "zip", "jpeg")
    truncated = client.compressed_message(rgb, _stamp(), "zip", "jpeg")
    truncated.data = truncated.data[: len(truncated.data) // 2]
    garbage = client.compressed_message(rgb, _stamp(), "zip", "png")
    garbage.data = bytes(range(256)) * 8
    for bad in (truncated, garbage):
        client.publish(bad)
        client.spin_for(0.3)  # depth 1: a second message right behind would replace it
    assert client.exchange(good, timeout=20.0) is not None
    assert node.alive()
    log = node.log_text()
    assert "rejected image (truncated): JPEG data is truncated" in log
    assert "rejected image (format): unsupported compressed format" in log


# --- clocks, build_only, start-up errors --------------------------------------------------

def test_use_sim_time_follows_the_bag_clock(tiny_model_path, ros_env, ros_context,
                                            camvid_frames):
    from rosgraph_msgs.msg import Clock

    (_, rgb), = camvid_frames(1)
    with NodeProcess({"model": str(tiny_model_path), "use_sim_time": True,
                      "diagnostics_period": 0.2}, env=ros_env, namespace="/sim") as node:
        client = FrameClient(context=ros_context, image_topic="/sim/image",
                             labels_topic="/sim/labels/image", name="sim_client", diagnostics=True)
        clock = client.node.create_publisher(Clock, "/clock", 10)
        try:
            client.wait_for_node(timeout=60.0, alive=node.alive)
            bag_time = Time(sec=4242, nanosec=500)
            msg = client.image_message(rgb, "rgb8", bag_time, "bag_cam")
            reply = client.exchange(msg, timeout=20.0)
            assert reply is not None and reply[0].header.stamp == bag_time

            def stamped_with_bag_clock():
                clock.publish(Clock(clock=Time(sec=4300)))
                entry = client.node_diagnostics("/sim/segmentation_node")
                return entry is not None and entry[2].sec == 4300

            assert client.wait_for(stamped_with_bag_clock, 15.0), node.log_text()[-2000:]
        finally:
            client.close()


def test_build_only_prepares_the_backend_and_exits(tiny_model_path, ros_env):
    node = NodeProcess({"model": str(tiny_model_path), "build_only": True}, env=ros_env).start()
    try:
        node.process.wait(timeout=60)
    finally:
        node.stop()
    assert node.process.returncode == 0, node.log_text()
    assert "build_only: onnxruntime" in node.log_text()


def _text_file(tmp_path, tiny):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a network\n")
    return path


def _onnx_without_metadata(tmp_path, tiny):
    onnx = pytest.importorskip("onnx", reason="onnx not installed (runtime-only environment)")
    model = onnx.load(str(tiny))
    del model.metadata_props[:]
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    return path


def _float_input_model(tmp_path, tiny):
    onnx = pytest.importorskip("onnx", reason="onnx not installed (runtime-only environment)")
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, "h", "w", 3])
    out = helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, "h", "w"])
    cast = helper.make_node("Cast", ["image"], ["c"], to=TensorProto.UINT8)
    index = helper.make_tensor("index", TensorProto.INT64, [], [0])
    gather = helper.make_node("Gather", ["c", "index"], ["labels"], axis=3)
    model = helper.make_model(helper.make_graph([cast, gather], "g", [inp], [out],
                                                initializer=[index]),
                              opset_imports=[helper.make_opsetid("", 17)])
    for prop in onnx.load(str(tiny)).metadata_props:
        entry = model.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    path = tmp_path / "float_input.onnx"
    onnx.save(model, str(path))
    return path


def _model_without_confidence(tmp_path, tiny):
    """The tiny model with its 'confidence' graph output taken away (labels only)."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny))
    kept = [o for o in model.graph.output if o.name != "confidence"]
    assert len(kept) == len(model.graph.output) - 1
    del model.graph.output[:]
    model.graph.output.extend(kept)
    path = tmp_path / "labels_only.onnx"
    onnx.save(model, str(path))
    return path


def _engine_without_sidecar(tmp_path, tiny):
    path = tmp_path / "orphan.engine"
    path.write_bytes(b"\x00" * 64)
    return path


def _engine_with_sidecar(tmp_path, tiny):
    from textseg.engine.engine_cache import EngineKey, EngineRecord, PlatformFacts, store_engine
    from textseg.engine.onnx_file import describe_model

    model = describe_model(tiny)
    key = EngineKey.for_platform(model.sha256, PlatformFacts("10.3.0", "Orin", "8.7"), "fp16",
                                 (360, 480))
    path = tmp_path / "baked.engine"
    store_engine(path, b"plan", EngineRecord(key, "", 0, model.info.to_metadata(), True,
                                             str(tiny)))
    return path


def _tampered_model(tmp_path, tiny):
    """The tiny model with its class scores permuted and its stored self-check kept."""
    onnx = pytest.importorskip("onnx", reason="the onnx package is needed to edit a model")
    from onnx import numpy_helper

    proto = onnx.load(str(tiny))
    inits = {t.name: t for t in proto.graph.initializer}
    conv = [n for n in proto.graph.node if n.op_type == "Conv" and n.input[1] in inits
            and numpy_helper.to_array(inits[n.input[1]]).shape[0] == 11][-1]
    for name in conv.input[1:]:
        inits[name].CopyFrom(numpy_helper.from_array(
            numpy_helper.to_array(inits[name])[::-1].copy(), name))
    path = tmp_path / "tampered.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("parameters, message", [
    ({"model": "does/not/exist.onnx"}, "model file not found: does/not/exist.onnx"),
    ({"model": _tampered_model}, "self-check FAILED"),
    ({"self_check": "maybe"}, "self_check 'maybe' is not one of"),
    ({"model": _text_file}, "is not an ONNX model"),
    ({"model": _onnx_without_metadata}, "is not a textseg model"),
    ({"model": _float_input_model}, "expected a uint8 input 'image'"),
    ({"model": _model_without_confidence, "publish_confidence": True},
     "has no 'confidence' output"),
    ({"model": _engine_without_sidecar}, "has no sidecar"),
    ({"model": _engine_with_sidecar}, "TensorRT"),
    ({"backend": "tensorrt"}, "TensorRT"),
    # The node process words what ROS refuses (a range, a type) as the parameters' checks do;
    # every other bad parameter: test/test_node_parameters.py.
    ({"qos_depth": 0}, "qos_depth must be >= 1"),
    ({"qos_depth": "deep"}, "qos_depth must be an integer"),
])
def test_bad_start_up_gives_one_clear_error(parameters, message, tiny_model_path, ros_env,
                                            tmp_path):
    params = {"model": str(tiny_model_path), **parameters}
    if callable(params["model"]):
        params["model"] = str(params["model"](tmp_path, tiny_model_path))
    node = NodeProcess(params, env=ros_env).start()
    try:
        node.process.wait(timeout=60)
    finally:
        node.stop()
    log = node.log_text()
    assert node.process.returncode == 1, log
    assert message in log
    assert "Traceback" not in log
    assert log.count("[FATAL]") == 1, log


def test_self_check_warn_runs_a_failing_model_and_says_so(tiny_model_path, ros_env,
                                                           ros_context, camvid_frames,
                                                           tmp_path):
    """self_check: warn: the node serves frames, logs the failed check and reports it on
    /diagnostics; a passing model reports its agreement there too."""
    tampered = _tampered_model(tmp_path, tiny_model_path)
    node = NodeProcess({"model": str(tampered), "self_check": "warn", "threads": 1,
                        "diagnostics_period": 0.3}, env=ros_env, namespace="/warned").start()
    client = FrameClient(context=ros_context, image_topic="/warned/image",
                         labels_topic="/warned/labels/image", diagnostics=True)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        (_, rgb), = camvid_frames(1)
        assert client.exchange(client.image_message(rgb, "rgb8", _stamp(), "w"), 20.0)
        entry = _diagnostics_when(client, "/warned/segmentation_node",
                                  lambda v: v.get("self-check", "-") != "-")
        assert entry is not None, node.log_text()[-2000:]
        assert entry[0]["self-check"].startswith("self-check FAILED")
    finally:
        client.close()
        assert node.stop() == 0, node.log_text()[-2000:]
    log = node.log_text()
    assert "WARNING" in log and "self-check FAILED" in log and str(tampered) in log
