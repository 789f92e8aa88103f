"""Several cameras, one model: `cameras: [front, left, rear]` in one node process, over real DDS.

Each camera has its own input, outputs (with the input's header), camera_info and diagnostics
status; the labels equal the backend's on that camera's frame; under overload from every
camera at once, each camera gets answered (the worker serves the cameras in turn).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from textseg.client.frame_client import FrameClient, stamp_key  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402
from textseg.engine import BackendOptions, load_backend  # noqa: E402

pytestmark = pytest.mark.ros
CAMERAS = ("front", "left", "rear")
_stamps = itertools.count(1)


def _stamp() -> Time:
    n = next(_stamps)
    return Time(sec=1_650_000_000 + n, nanosec=(n * 104_729) % 1_000_000_000)


def _camera_clients(ros_context, namespace: str, prefix: str, **extra) -> dict:
    """One FrameClient per camera of CAMERAS on the node in `namespace`; the front camera's
    also collects /diagnostics."""
    return {camera: FrameClient(context=ros_context, image_topic=f"{namespace}/{camera}/image",
                                labels_topic=f"{namespace}/{camera}/labels/image",
                                name=f"{prefix}{camera}_client",
                                diagnostics=camera == "front",
                                **{k: v(camera) for k, v in extra.items()})
            for camera in CAMERAS}


@pytest.fixture(scope="module")
def multi_node(tiny_model_path, ros_env, ros_context):
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1,
                        "cameras": list(CAMERAS), "camera_info": True,
                        "diagnostics_period": 0.3}, env=ros_env, namespace="/multi").start()
    clients = {}
    try:
        clients = _camera_clients(
            ros_context, "/multi", "",
            outputs=lambda camera: {f"/multi/{camera}/labels/camera_info": CameraInfo})
        for client in clients.values():
            client.wait_for_node(timeout=60.0, alive=node.alive)
        yield node, clients
    finally:
        for client in clients.values():
            client.close()
        code = node.stop()
        assert code == 0, f"node did not exit cleanly ({code}):\n{node.log_text()[-2000:]}"


def test_each_camera_is_answered_on_its_own_topics_with_its_own_header(
        multi_node, tiny_model_path, camvid_frames):
    node, clients = multi_node
    reference = load_backend(tiny_model_path, BackendOptions(threads=1))
    frames = [rgb for _, rgb in camvid_frames(len(CAMERAS))]
    for camera, rgb in zip(CAMERAS, frames, strict=True):
        client = clients[camera]
        info_pub = client.node.create_publisher(CameraInfo, f"/multi/{camera}/camera_info", 10)
        assert client.wait_for(lambda p=info_pub: p.get_subscription_count() > 0, 10.0)
        info = CameraInfo()
        info.height, info.width = rgb.shape[:2]
        info.k = [300.0 + len(camera), 0.0, 240.0, 0.0, 300.0, 180.0, 0.0, 0.0, 1.0]
        for _ in range(3):
            info_pub.publish(info)
            client.spin_for(0.1)
        msg = client.image_message(rgb, "rgb8", _stamp(), f"{camera}_optical")
        reply = client.exchange(msg, timeout=20.0)
        assert reply is not None, node.log_text()[-2000:]
        labels = reply[0]
        assert labels.header.frame_id == f"{camera}_optical"
        assert labels.header.stamp == msg.header.stamp
        np.testing.assert_array_equal(
            np.frombuffer(labels.data, np.uint8).reshape(rgb.shape[:2]),
            reference.infer(rgb).labels)
        infos, key = client.outputs[f"/multi/{camera}/labels/camera_info"], stamp_key(msg)
        assert client.wait_for(lambda k=key, i=infos: k in i, 10.0)
        # Each camera's own calibration, not another camera's.
        assert infos[key][0].k[0] == 300.0 + len(camera)
    log = node.log_text()
    for camera in CAMERAS:
        assert f"camera {camera}: model" in log and f"/multi/{camera}/image" in log


def test_every_camera_has_its_own_diagnostics_status(multi_node):
    node, clients = multi_node
    front = clients["front"]
    names = [f"/multi/segmentation_node: segmentation {camera}" for camera in CAMERAS]
    assert front.wait_for(lambda: all(n in front.diagnostics for n in names), 10.0), \
        list(front.diagnostics)
    for camera, name in zip(CAMERAS, names, strict=True):
        values = front.diagnostics[name][0]
        assert values["camera"] == camera
        assert int(values["messages received"]) >= 0


def test_overload_from_every_camera_answers_every_camera(multi_node, camvid_frames):
    """All cameras at once, far faster than the model: no camera is starved, and each
    camera's books balance (received = processed + dropped + rejected + failed + skipped)."""
    node, clients = multi_node
    frames = [rgb for _, rgb in camvid_frames(2)]
    answered = {camera: 0 for camera in CAMERAS}
    sent = {camera: [] for camera in CAMERAS}
    deadline = time.monotonic() + 6.0
    i = 0
    while time.monotonic() < deadline:
        # Bursts of 3 per camera: faster than any node, whatever this machine's publish costs
        # (on Jazzy's rclpy one frame per camera per round let the tiny model keep up).
        for _ in range(3):
            for camera in CAMERAS:
                msg = clients[camera].image_message(frames[i % 2], "rgb8", _stamp(), camera)
                clients[camera].publish(msg)
                sent[camera].append(stamp_key(msg))
        i += 1
        for client in clients.values():
            client.spin_for(0.01)
    for client in clients.values():
        client.spin_for(1.0)
    for camera in CAMERAS:
        answered[camera] = sum(1 for key in sent[camera] if key in clients[camera].received)
    assert all(count > 0 for count in answered.values()), answered
    # Served in turn: no camera gets less than a third of the best-served one.
    assert min(answered.values()) * 3 >= max(answered.values()), answered
    front = clients["front"]
    front.spin_for(1.0)
    for camera in CAMERAS:
        values = front.diagnostics[f"/multi/segmentation_node: segmentation {camera}"][0]
        received = int(values["messages received"])
        explained = sum(int(values[k]) for k in (
            "frames processed", "frames dropped", "messages rejected", "inference failures",
            "frames skipped (no subscribers)"))
        assert received == explained, (camera, values)
        assert int(values["frames dropped"]) > 0, (camera, values)


@pytest.mark.parametrize("sessions", [1, 2])
def test_batched_cameras_each_get_their_own_labels(tiny_model_path, ros_env, ros_context,
                                                   camvid_frames, sessions):
    """max_batch 3 on ONNX Runtime (auto would not batch on CPU): under load from every
    camera, frames of several cameras run as one inference, and each camera still gets the
    labels of its own frame, with its own header, and books that balance; also with two
    sessions in parallel (the worker that serves them batches too)."""
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "max_batch": 3,
                        "parallel_inferences": sessions,
                        "cameras": list(CAMERAS), "diagnostics_period": 0.3}, env=ros_env,
                       namespace="/batched").start()
    clients = {}
    try:
        clients = _camera_clients(ros_context, "/batched", "batched_")
        for client in clients.values():
            client.wait_for_node(timeout=60.0, alive=node.alive)
        reference = load_backend(tiny_model_path, BackendOptions(threads=1))
        frames = {camera: rgb for camera, (_, rgb) in zip(CAMERAS, camvid_frames(3),
                                                          strict=True)}
        expected = {camera: reference.infer(rgb).labels for camera, rgb in frames.items()}
        sent = {camera: set() for camera in CAMERAS}
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            for camera in CAMERAS:
                msg = clients[camera].image_message(frames[camera], "rgb8", _stamp(), camera)
                clients[camera].publish(msg)
                sent[camera].add(stamp_key(msg))
            for client in clients.values():
                client.spin_for(0.01)
        for client in clients.values():
            client.spin_for(1.0)
        for camera in CAMERAS:
            answered = [clients[camera].received[key][0] for key in sent[camera]
                        if key in clients[camera].received]
            assert answered, (camera, node.log_text()[-2000:])
            for labels in answered:
                assert labels.header.frame_id == camera
                np.testing.assert_array_equal(
                    np.frombuffer(labels.data, np.uint8).reshape(expected[camera].shape),
                    expected[camera])
        front = clients["front"]
        front.spin_for(1.0)
        status = front.diagnostics["/batched/segmentation_node: segmentation front"][0]
        assert status["frames per inference (max)"] == "3"
        assert int(status["batched inferences"]) > 0, status
        for camera in CAMERAS:
            values = front.diagnostics[f"/batched/segmentation_node: segmentation {camera}"][0]
            late = int(values["results dropped as late (a newer frame's went out first)"])
            assert sessions > 1 or late == 0  # only parallel inferences finish out of order
            explained = late + sum(int(values[k]) for k in (
                "frames processed", "frames dropped", "messages rejected",
                "inference failures", "frames skipped (no subscribers)"))
            assert int(values["messages received"]) == explained, (camera, values)
        assert "cameras batched: up to 3 frames" in node.log_text()
    finally:
        for client in clients.values():
            client.close()
        code = node.stop()
        assert code == 0, f"node did not exit cleanly ({code}):\n{node.log_text()[-2000:]}"


def test_auto_batching_stays_off_on_onnxruntime(multi_node):
    node, clients = multi_node
    front = clients["front"]
    name = "/multi/segmentation_node: segmentation front"
    assert front.wait_for(lambda: name in front.diagnostics, 10.0)
    status = front.diagnostics[name][0]
    assert status["frames per inference (max)"] == "1"
    assert status["batched inferences"] == "0"
