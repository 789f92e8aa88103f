"""labels/points over real DDS: the organized cloud arrives with the labels' header, pixel-
aligned, with the right fields; its points are the pinhole back-projection of a known depth
image, or the flat ground under a known camera pose; missing or bad inputs are counted skips;
nothing is computed while nobody subscribes."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from textseg.client.frame_client import FrameClient, stamp_key  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402
from textseg.points import POINT_DTYPE  # noqa: E402

pytestmark = pytest.mark.ros
K = (400.0, 0.0, 239.5, 0.0, 410.0, 179.5, 0.0, 0.0, 1.0)
_stamps = itertools.count(1)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _info(stamp, height=360, width=480) -> CameraInfo:
    info = CameraInfo()
    info.header.stamp, info.header.frame_id = stamp, "cam"
    info.height, info.width, info.k = height, width, list(K)
    return info


def _depth_image(stamp, metres: np.ndarray) -> Image:
    msg = Image()
    msg.header.stamp, msg.header.frame_id = stamp, "cam"
    msg.height, msg.width = metres.shape
    msg.encoding, msg.step = "16UC1", metres.shape[1] * 2
    msg.data = np.nan_to_num(np.round(metres * 1000), nan=0).astype(np.uint16).tobytes()
    return msg


def _cloud(msg: PointCloud2) -> np.ndarray:
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("label", 12, 2), ("confidence", 13, 2)]
    assert msg.point_step == 16 and msg.row_step == 16 * msg.width and not msg.is_dense
    return np.frombuffer(bytes(msg.data), POINT_DTYPE).reshape(msg.height, msg.width)


@pytest.fixture
def side(ros_context):
    node = Node("points_inputs", context=ros_context)
    yield node
    node.destroy_node()


def _start(tiny_model_path, ros_env, ros_context, namespace, params, outputs=None):
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "publish_confidence": True,
                        "diagnostics_period": 0.3, **params}, env=ros_env,
                       namespace=namespace).start()
    client = FrameClient(context=ros_context, image_topic=f"{namespace}/image",
                         labels_topic=f"{namespace}/labels/image", name="points_client",
                         outputs={f"{namespace}/labels/points": PointCloud2, **(outputs or {})},
                         diagnostics=True)
    client.wait_for_node(timeout=60.0, alive=node.alive)
    return node, client


def _send_until(client, side_pubs, make, topic, timeout=30.0):
    """Publish a frame (and its side inputs) until its cloud arrives; (stamp, cloud msg)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = next(_stamps)
        stamp = Time(sec=1_800_000_000 + n, nanosec=0)
        for publisher, message in side_pubs(stamp):
            publisher.publish(message)
        client.spin_for(0.05)
        client.publish(make(stamp))
        client.spin_for(0.8)
        key = (stamp.sec, stamp.nanosec)
        if key in client.outputs[topic] and key in client.received:
            return stamp, client.outputs[topic][key][0]
    return None, None


def test_depth_cloud_is_the_back_projection_aligned_with_the_labels(
        tiny_model_path, ros_env, ros_context, camvid_frames, side):
    (_, rgb), = camvid_frames(1)
    u, v = np.meshgrid(np.arange(480.0), np.arange(360.0))
    depth = np.where(u < 240, 3.0, 5.0 + v / 360.0)  # a wall and a slanted plane
    depth[:20] = np.nan  # invalid depth: NaN points
    node, client = _start(tiny_model_path, ros_env, ros_context, "/rgbd", {"points": "depth"})
    depth_pub = side.create_publisher(Image, "/rgbd/depth/image", RELIABLE)
    info_pub = side.create_publisher(CameraInfo, "/rgbd/depth/camera_info", RELIABLE)
    try:
        stamp, msg = _send_until(
            client, lambda s: [(depth_pub, _depth_image(s, depth)), (info_pub, _info(s))],
            lambda s: client.image_message(rgb, "rgb8", s, "cam"), "/rgbd/labels/points")
        assert msg is not None, node.log_text()[-3000:]
        labels_msg = client.received[stamp_key(msg)][0]
        assert msg.header == labels_msg.header  # same stamp and frame_id
        assert (msg.height, msg.width) == (labels_msg.height, labels_msg.width) == (360, 480)
        cloud = _cloud(msg)
        labels = np.frombuffer(bytes(labels_msg.data), np.uint8).reshape(360, 480)
        assert (cloud["label"] == labels).all()
        assert cloud["confidence"].max() > 0
        z = np.round(depth * 1000) / 1000
        valid = np.isfinite(z)
        assert np.isnan(cloud["x"][~valid]).all() and np.isnan(cloud["z"][~valid]).all()
        assert np.allclose(cloud["z"][valid], z[valid], atol=1e-6)
        assert np.allclose(cloud["x"][valid], ((u - K[2]) / K[0] * z)[valid], atol=1e-5)
        assert np.allclose(cloud["y"][valid], ((v - K[5]) / K[4] * z)[valid], atol=1e-5)
        # a depth image of another size (not registered to the colour camera): skipped, counted
        _, msg = _send_until(
            client, lambda s: [(depth_pub, _depth_image(s, depth[::2, ::2])),
                               (info_pub, _info(s))],
            lambda s: client.image_message(rgb, "rgb8", s, "cam"), "/rgbd/labels/points",
            timeout=3.0)
        assert msg is None
        key = "points skipped: depth size mismatch"
        assert client.wait_for(lambda: int((client.node_diagnostics("/rgbd/segmentation_node")
                                            or ({},))[0].get(key, 0)) >= 1, 10.0)
        assert "register the depth to the colour camera" in node.log_text()
        # the start-up line names every input the node listens on
        assert ("input /rgbd/image + /rgbd/depth/image + /rgbd/depth/camera_info"
                in node.log_text())
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


# --- output_scale 0.5 with a binned camera: the cloud and labels/camera_info agree ---------

@pytest.fixture(scope="module")
def scaled_rgbd(tiny_model_path, ros_env, ros_context):
    """A depth node at output_scale 0.5 that also publishes labels/camera_info, with publishers
    of its camera_info, depth/image and depth/camera_info."""
    node, client = _start(tiny_model_path, ros_env, ros_context, "/binned",
                          {"points": "depth", "output_scale": 0.5, "camera_info": True},
                          outputs={"/binned/labels/camera_info": CameraInfo})
    pubs = {name: client.node.create_publisher(kind, f"/binned/{name}", RELIABLE)
            for name, kind in (("camera_info", CameraInfo), ("depth/image", Image),
                               ("depth/camera_info", CameraInfo))}
    # Matched before the first frame: a depth image sent before discovery is simply lost.
    assert client.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()),
                           20.0), node.log_text()[-2000:]
    yield node, client, pubs
    client.close()
    code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def _distinct_depth() -> np.ndarray:
    """32FC1 metres, a different depth at every pixel of the 480x360 frame, so the pixel a
    point's z came from can be read back: 1 m + (row * 480 + column) * 0.01 mm."""
    rows, cols = np.meshgrid(np.arange(360), np.arange(480), indexing="ij")
    return (1.0 + (rows * 480 + cols) * 1e-5).astype(np.float32)


def _float_depth_image(stamp, metres: np.ndarray) -> Image:
    msg = Image()
    msg.header.stamp, msg.header.frame_id = stamp, "cam"
    msg.height, msg.width = metres.shape
    msg.encoding, msg.step = "32FC1", metres.shape[1] * 4
    msg.data = metres.astype("<f4").tobytes()
    return msg


def _sensor_info(stamp, width, height, binning, roi, k) -> CameraInfo:
    info = CameraInfo()
    info.header.stamp, info.header.frame_id = stamp, "cam"
    info.width, info.height, info.k = width, height, list(k)
    info.binning_x = info.binning_y = binning
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
    return info


@pytest.mark.parametrize("camera", ["binned", "binned_roi"])
def test_a_binned_camera_gets_its_cloud_placed_with_the_labels_camera_info(
        camera, scaled_rgbd, camvid_frames):
    """The 480x360 frames of a camera calibrated at 960x720 with binning 2 (or a 960x720 ROI of
    a 1600x1200 sensor, binned by 2): the cloud of the 240x180 labels uses the very K that
    labels/camera_info publishes, and each label pixel (u, v) takes the depth of frame pixel
    (2u, 2v), the one its ray passes through."""
    node, client, pubs = scaled_rgbd
    (_, rgb), = camvid_frames(1)
    depth = _distinct_depth()
    # sensor K whose folded (binning 2) and scaled (x0.5) form is fx 200, fy 205, c (120.25, 89.5)
    if camera == "binned":
        size, roi, cx, cy = (960, 720), (0, 0, 0, 0), 481.0, 358.0
    else:
        size, roi, cx, cy = (1600, 1200), (160, 120, 960, 720), 641.0, 478.0
    k = (800.0, 0.0, cx, 0.0, 820.0, cy, 0.0, 0.0, 1.0)

    def inputs(stamp):
        info = _sensor_info(stamp, *size, 2, roi, k)
        return [(pubs["camera_info"], info), (pubs["depth/camera_info"], info),
                (pubs["depth/image"], _float_depth_image(stamp, depth))]

    stamp, msg = _send_until(client, inputs, lambda s: client.image_message(rgb, "rgb8", s, "cam"),
                             "/binned/labels/points")
    assert msg is not None, node.log_text()[-3000:]
    key = (stamp.sec, stamp.nanosec)
    infos = client.outputs["/binned/labels/camera_info"]
    assert client.wait_for(lambda: key in infos, 10.0)
    labels_info = infos[key][0]
    assert list(labels_info.k) == [200.0, 0.0, 120.25, 0.0, 205.0, 89.5, 0.0, 0.0, 1.0]
    assert (msg.height, msg.width) == (labels_info.height, labels_info.width) == (180, 240)
    cloud = _cloud(msg)
    labels = np.frombuffer(bytes(client.received[key][0].data), np.uint8).reshape(180, 240)
    assert (cloud["label"] == labels).all()
    # z: the depth of frame pixel (2u, 2v), identified by its value
    u, v = np.meshgrid(np.arange(240), np.arange(180))
    assert np.array_equal(cloud["z"], depth[2 * v, 2 * u])
    # x, y: along the ray labels/camera_info gives the label pixel
    fx, cx, fy, cy = (labels_info.k[i] for i in (0, 2, 4, 5))
    assert np.allclose(cloud["x"], (u - cx) / fx * cloud["z"], atol=1e-5)
    assert np.allclose(cloud["y"], (v - cy) / fy * cloud["z"], atol=1e-5)


def test_depth_camera_info_problems_name_depth_camera_info(scaled_rgbd, camvid_frames):
    """A depth/camera_info that cannot place the depth image is a counted skip whose warning
    names depth/camera_info (not the colour camera's camera_info, which is fine here)."""
    node, client, pubs = scaled_rgbd
    (_, rgb), = camvid_frames(1)
    depth = _distinct_depth()
    uncalibrated = list(K)
    uncalibrated[0] = 0.0
    sent = []
    for width, height, binning, k, expected in (
            (640, 480, 0, K, "depth/camera_info size mismatch: 640x480 for a 480x360 image"),
            (1280, 960, 2, K, "depth/camera_info size mismatch: 1280x960 (binning 2x2: a "
                              "640x480 image) for a 480x360 image"),
            (480, 360, 0, uncalibrated, "depth/camera_info K is not a calibrated pinhole")):
        # frames until the warning shows (one per kind every 5 s: the log is rate-limited)
        deadline = time.monotonic() + 20.0
        while expected not in node.log_text() and time.monotonic() < deadline:
            stamp = Time(sec=1_900_000_000 + next(_stamps))
            pubs["camera_info"].publish(_info(stamp))
            pubs["depth/camera_info"].publish(
                _sensor_info(stamp, width, height, binning, (0, 0, 0, 0), k))
            pubs["depth/image"].publish(_float_depth_image(stamp, depth))
            client.spin_for(0.05)
            client.publish(client.image_message(rgb, "rgb8", stamp, "cam"))
            client.spin_for(0.8)
            sent.append((stamp.sec, stamp.nanosec))
        assert expected in node.log_text(), node.log_text()[-3000:]
    assert any(key in client.received for key in sent)  # the labels flowed
    assert not any(key in client.outputs["/binned/labels/points"] for key in sent)
    values = client.node_diagnostics("/binned/segmentation_node")[0]
    assert int(values["points skipped: depth/camera_info size mismatch"]) >= 2


def test_depth_cloud_follows_camera_info_and_checks_its_size(scaled_rgbd, camvid_frames):
    """With camera_info on, labels/points uses the K labels/camera_info publishes (camera_info,
    not a depth/camera_info that differs), and a camera_info of another size is a counted skip
    named like in ground mode; the labels and labels/camera_info still flow."""
    node, client, pubs = scaled_rgbd
    (_, rgb), = camvid_frames(1)
    depth = np.full((360, 480), 2.5)  # 16UC1: half the bytes of 32FC1 over DDS
    depth_k = (420.0, 0.0, 235.0, 0.0, 430.0, 175.0, 0.0, 0.0, 1.0)

    def inputs(camera_info):
        return lambda stamp: [(pubs["camera_info"], camera_info(stamp)),
                              (pubs["depth/camera_info"],
                               _sensor_info(stamp, 480, 360, 0, (0, 0, 0, 0), depth_k)),
                              (pubs["depth/image"], _depth_image(stamp, depth))]

    stamp, msg = _send_until(client, inputs(_info),
                             lambda s: client.image_message(rgb, "rgb8", s, "cam"),
                             "/binned/labels/points")
    assert msg is not None, node.log_text()[-3000:]
    key = (stamp.sec, stamp.nanosec)
    infos = client.outputs["/binned/labels/camera_info"]
    assert client.wait_for(lambda: key in infos, 10.0)
    fx, cx, fy, cy = (infos[key][0].k[i] for i in (0, 2, 4, 5))
    assert (fx, cx, fy, cy) == (200.0, 119.75, 205.0, 89.75)  # camera_info's K, halved
    cloud = _cloud(msg)
    u, v = np.meshgrid(np.arange(240), np.arange(180))
    assert np.allclose(cloud["x"], (u - cx) / fx * cloud["z"], atol=1e-5)
    assert np.allclose(cloud["y"], (v - cy) / fy * cloud["z"], atol=1e-5)
    # a 640x480 camera_info (no binning) for the 480x360 frames: skipped, named, counted
    expected = "labels/points skipped: camera_info size mismatch: 640x480 for a 480x360 image"
    _, msg = _send_until(client, inputs(lambda s: _info(s, 480, 640)),
                         lambda s: client.image_message(rgb, "rgb8", s, "cam"),
                         "/binned/labels/points", timeout=4.0)
    assert msg is None
    assert client.wait_for(lambda: expected in node.log_text(), 10.0), node.log_text()[-3000:]
    key = "points skipped: camera_info size mismatch"
    assert client.wait_for(lambda: int((client.node_diagnostics("/binned/segmentation_node")
                                        or ({},))[0].get(key, 0)) >= 1, 10.0)


def test_ground_cloud_from_a_plain_camera_and_counted_skips(
        tiny_model_path, ros_env, ros_context, camvid_frames, side):
    (_, rgb), = camvid_frames(1)
    pitch, height = 0.2, 1.5
    node, client = _start(tiny_model_path, ros_env, ros_context, "/mono",
                          {"points": "ground", "ground_height": height, "ground_pitch": pitch,
                           "ground_max_range": 40.0})
    info_pub = side.create_publisher(CameraInfo, "/mono/camera_info", RELIABLE)
    try:
        # no camera_info yet: a counted skip, the labels still flow
        for _ in range(3):
            reply = client.exchange(client.image_message(
                rgb, "rgb8", Time(sec=1_700_000_000 + next(_stamps)), "cam"), 20.0)
            assert reply is not None
        skipped = "points skipped: no camera_info yet"
        assert client.wait_for(lambda: int((client.node_diagnostics("/mono/segmentation_node")
                                            or ({},))[0].get(skipped, 0)) >= 1, 10.0)
        stamp, msg = _send_until(client, lambda s: [(info_pub, _info(s))],
                                 lambda s: client.image_message(rgb, "rgb8", s, "cam"),
                                 "/mono/labels/points")
        assert msg is not None, node.log_text()[-3000:]
        cloud = _cloud(msg)
        points = np.stack([cloud["x"], cloud["y"], cloud["z"]], -1)
        hit = np.isfinite(points).all(-1)
        # level frame: y down; every ground point h below the camera
        level_y = points[..., 1] * math.cos(pitch) + points[..., 2] * math.sin(pitch)
        assert np.allclose(level_y[hit], height, atol=1e-3)
        horizon = K[5] - K[4] * math.tan(pitch)
        assert not hit[: int(horizon) - 1].any() and hit[int(horizon) + 2:].mean() > 0.9
        assert np.nanmax(np.linalg.norm(points, axis=-1)) <= 40.0
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def test_nothing_is_computed_while_nobody_subscribes(tiny_model_path, ros_env, ros_context,
                                                     camvid_frames):
    (_, rgb), = camvid_frames(1)
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "points": "ground",
                        "ground_height": 1.5, "diagnostics_period": 0.3}, env=ros_env,
                       namespace="/lazy3d").start()
    client = FrameClient(context=ros_context, image_topic="/lazy3d/image",
                         labels_topic="/lazy3d/labels/image", name="lazy_client",
                         diagnostics=True)  # labels only: no labels/points subscriber
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        for _ in range(3):
            assert client.exchange(client.image_message(
                rgb, "rgb8", Time(sec=1_600_000_000 + next(_stamps)), "cam"), 20.0)
        values = None
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            client.spin_for(0.3)
            entry = client.node_diagnostics("/lazy3d/segmentation_node")
            if entry and int(entry[0].get("frames processed", 0)) >= 3:
                values = entry[0]
                break
        assert values is not None
        assert values["points published"] == "0"
        assert not any(key.startswith("points skipped") for key in values)  # not attempted
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def test_points_parameters_are_checked_at_start(tiny_model_path, ros_env):
    """Against the model's classes; the parameters alone: test/test_node_parameters.py."""
    params, message = ({"points": "ground", "ground_height": 1.0,
                        "ground_standing_classes": ["truck"]},
                       "['truck'] are not among the output classes")
    node = NodeProcess({"model": str(tiny_model_path), **params}, env=ros_env,
                       namespace="/badpoints").start()
    code = node.exit_code(timeout=30.0)
    assert code == 1 and message in node.log_text(), node.log_text()[-2000:]
