"""segmentation_node end to end: a real node process, real DDS, real CamVid frames.

The test process publishes frames and subscribes to the labels; the node runs in its own
process (started and stopped by PID). Traffic stays on this machine.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402

from textseg.engine import default_model_path, load_backend, package_share_dir  # noqa: E402
from textseg.imaging import image_to_rgb  # noqa: E402
from textseg.node.frame_client import FrameClient  # noqa: E402
from textseg.node.process import NodeProcess, local_ros_environment  # noqa: E402

pytestmark = pytest.mark.ros
_stamps = itertools.count(1)


def _stamp() -> Time:
    n = next(_stamps)
    return Time(sec=1_600_000_000 + n, nanosec=(n * 7919) % 1_000_000_000)


@pytest.fixture(scope="module")
def ros_env():
    return local_ros_environment()


@pytest.fixture(scope="module")
def ros_context(ros_env, monkeypatch_module):
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                "FASTDDS_DEFAULT_PROFILES_FILE"):
        monkeypatch_module.setenv(key, ros_env[key])
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def running_node(tiny_model_path, ros_env, ros_context):
    """One node for the module; threads=1 so the reference backend computes bit-identically."""
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1}, env=ros_env).start()
    client = FrameClient(context=ros_context)
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        yield node, client
    finally:
        client.close()
        code = node.stop()
        assert code == 0, f"node did not exit cleanly ({code}):\n{node.log_text()[-2000:]}"


@pytest.fixture(scope="module")
def reference_backend(tiny_model_path):
    return load_backend(tiny_model_path, threads=1)


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


def test_topics_are_relative_and_remappable(tiny_model_path, ros_env, ros_context, camvid_frames):
    (_, rgb), = camvid_frames(1)
    remap = {"image": "front/image_raw", "labels": "front/labels"}
    with NodeProcess({"model": str(tiny_model_path)}, remappings=remap,
                     env=ros_env, node_name="front_segmentation") as node:
        client = FrameClient(context=ros_context, image_topic="front/image_raw",
                             labels_topic="front/labels", name="remap_client")
        try:
            client.wait_for_node(timeout=60.0, alive=node.alive)
            msg = client.image_message(rgb, "rgb8", _stamp(), "front")
            assert client.exchange(msg, timeout=20.0) is not None
        finally:
            client.close()


def test_node_starts_with_no_parameters_on_the_default_artifact(ros_env, ros_context,
                                                               camvid_frames):
    model = default_model_path()
    if not model.is_file():
        pytest.skip(f"default artifact {model} not exported yet (scripts/setup.sh does it)")
    (_, rgb), = camvid_frames(1)
    with NodeProcess(env=ros_env, namespace="/defaults") as node:
        client = FrameClient(context=ros_context, image_topic="/defaults/image",
                             labels_topic="/defaults/labels", name="defaults_client")
        try:
            client.wait_for_node(timeout=60.0, alive=node.alive)
            msg = client.image_message(rgb, "rgb8", _stamp(), "default")
            assert client.exchange(msg, timeout=20.0) is not None
        finally:
            client.close()
    assert str(model) in node.log_text()


def test_shipped_params_file_loads(tiny_model_path, ros_env, ros_context, camvid_frames):
    (_, rgb), = camvid_frames(1)
    params_file = package_share_dir() / "config" / "segmentation.yaml"
    with NodeProcess({"model": str(tiny_model_path)}, params_file=params_file,
                     env=ros_env, namespace="/params") as node:
        client = FrameClient(context=ros_context, image_topic="/params/image",
                             labels_topic="/params/labels", name="params_client")
        try:
            client.wait_for_node(timeout=60.0, alive=node.alive)
            msg = client.image_message(rgb, "bgr8", _stamp(), "params")
            assert client.exchange(msg, timeout=20.0) is not None
        finally:
            client.close()
    assert "[best_effort, depth 1]" in node.log_text()


@pytest.mark.parametrize("parameters, message", [
    ({"model": "does/not/exist.onnx"}, "model file not found: does/not/exist.onnx"),
    ({"qos_reliability": "sometimes"}, "qos_reliability 'sometimes' is not one of"),
    ({"qos_depth": 0}, "qos_depth must be >= 1"),
    ({"backend": "magic"}, "backend 'magic' is not one of"),
])
def test_bad_start_up_gives_one_clear_error(parameters, message, tiny_model_path, ros_env):
    params = {"model": str(tiny_model_path), **parameters}
    node = NodeProcess(params, env=ros_env).start()
    try:
        node.process.wait(timeout=60)
    finally:
        node.stop()
    log = node.log_text()
    assert node.process.returncode == 1, log
    assert message in log
    assert "Traceback" not in log
