"""labels/health over real DDS: the shipped default model with a health reference from CamVid
train frames, fed CamVid val frames by a client process: clean frames are OK; the same frames
in near darkness or behind a dirty lens, black frames and a frozen camera are flagged."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

from textseg.cli import main  # noqa: E402
from textseg.client.frame_client import FrameClient, stamp_key  # noqa: E402
from textseg.client.process import NodeProcess, serving  # noqa: E402
from textseg.engine import default_model_path  # noqa: E402
from textseg.health import HealthThresholds, HealthWeights  # noqa: E402
from textseg.replay.corruptions import corrupt  # noqa: E402

pytestmark = pytest.mark.ros
NS = "/health"
WINDOW = 8
_stamps = itertools.count(1)


@pytest.fixture(scope="module")
def model_with_reference(camvid_dir, tmp_path_factory):
    if not default_model_path().is_file():
        pytest.skip("the default model is not in models/")
    model = tmp_path_factory.mktemp("health") / "default.onnx"
    shutil.copy(default_model_path(), model)
    assert main(["health-reference", str(model), str(camvid_dir / "train"),
                 "--count", "24"]) == 0
    return model


@pytest.fixture(scope="module")
def node_and_client(model_with_reference, ros_env, ros_context):
    node = NodeProcess({"model": str(model_with_reference), "threads": 1,
                        "health_window": WINDOW, "health_frozen_frames": 4,
                        "diagnostics_period": 0.3}, env=ros_env, namespace=NS).start()
    client = FrameClient(context=ros_context, image_topic=f"{NS}/image",
                         labels_topic=f"{NS}/labels/image", name="health_client",
                         outputs={f"{NS}/labels/health": DiagnosticArray}, diagnostics=True)
    with serving(node, client) as running:
        yield running


def _health_of(client, rgb) -> dict:
    """Send one frame, wait for its labels and its labels/health; that status as a dict."""
    stamp = next(_stamps)
    msg = client.image_message(rgb, "rgb8", Time(sec=stamp, nanosec=0), "camera")
    assert client.exchange(msg, timeout=20.0) is not None
    health = client.outputs[f"{NS}/labels/health"]
    assert client.wait_for(lambda: stamp_key(msg) in health, 5.0)
    array, _ = health[stamp_key(msg)]
    assert array.header.stamp == msg.header.stamp and array.header.frame_id == "camera"
    (status,) = array.status
    return {"level": status.level[0], "message": status.message,
            **{kv.key: kv.value for kv in status.values}}


def test_clean_frames_are_ok_and_dark_ones_are_flagged(node_and_client, camvid_frames):
    node, client = node_and_client
    # before any frame, /diagnostics says the health is not known, not that it is fine
    name = f"{NS}/segmentation_node: health"
    assert client.wait_for(lambda: name in client.diagnostics, 10.0)
    before = client.diagnostics[name][0]
    assert before["health level"] == "STALE", before
    frames = [rgb for _, rgb in camvid_frames(24)][::2]
    clean = [_health_of(client, rgb) for rgb in frames]
    assert all(h["level"] == 0 for h in clean[WINDOW - 1:]), [h["message"] for h in clean]
    assert clean[-1]["health window (frames)"] == str(WINDOW)
    dark = [_health_of(client, corrupt(rgb, "low_light", 5, seed=i))
            for i, rgb in enumerate(frames)]
    assert all(h["level"] >= 1 for h in dark[WINDOW - 1:]), [h["message"] for h in dark]
    assert float(dark[-1]["health score"]) < float(clean[-1]["health score"]) - 0.2
    # the same status is on /diagnostics, by the node's name, now judged
    assert client.wait_for(lambda: client.diagnostics[name][0].get("health level") != "STALE",
                           5.0)


def test_a_dirty_lens_is_flagged(node_and_client, camvid_frames):
    """Mud on the lens (the corruption's severity 5) over frames that are OK clean: the
    window's uncertain share rises enough to flag it on its own."""
    node, client = node_and_client
    frames = [rgb for _, rgb in camvid_frames(2 * WINDOW)]
    clean = [_health_of(client, rgb) for rgb in frames]
    assert all(h["level"] == 0 for h in clean[WINDOW:]), [h["message"] for h in clean]
    dirty = [_health_of(client, corrupt(rgb, "lens_dirt", 5, seed=i))
             for i, rgb in enumerate(frames)]
    assert all(h["level"] >= 1 for h in dirty[WINDOW:]), [h["message"] for h in dirty]
    reference = float(dirty[-1]["reference uncertain share"])
    assert float(clean[-1]["uncertain share"]) < float(dirty[-1]["uncertain share"])
    uncertain_term = 1 - HealthWeights().uncertain * (float(dirty[-1]["uncertain share"])
                                                      - reference)
    assert uncertain_term < HealthThresholds().warn_below, dirty[-1]


def test_black_and_frozen_cameras_are_errors(node_and_client, camvid_frames):
    node, client = node_and_client
    black = _health_of(client, np.full((360, 480, 3), 3, np.uint8))
    assert black["level"] == 2 and "black image" in black["message"], black
    (_, still), = camvid_frames(1)
    frozen = [_health_of(client, still) for _ in range(4)]
    assert frozen[-1]["level"] == 2 and "frozen image: 4 identical frames" in \
        frozen[-1]["message"], frozen[-1]
    assert "frozen" not in frozen[0]["message"]
