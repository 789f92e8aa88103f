"""Models from other frameworks, imported with `textseg import` (docs/bring_your_model.md), in a
real segmentation_node process over DDS: the labels it publishes for CamVid frames are the
framework's own argmax (except at numerical ties)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("onnx", reason="textseg import needs the onnx package")
pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("textseg_training", reason="training package not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from import_recipes import RECIPES, assert_same_labels, framework_labels, run_recipe  # noqa: E402

from textseg.client.frame_client import FrameClient  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402
from textseg.engine.onnx_file import describe_model  # noqa: E402

pytestmark = pytest.mark.ros
_stamps = itertools.count(1)


@pytest.mark.parametrize("name", RECIPES)
def test_imported_model_runs_in_the_node_with_the_frameworks_labels(
        name, tmp_path, camvid_dir, camvid_frames, ros_env, ros_context):
    import torch

    torch.manual_seed(0)
    model, path, _ = run_recipe(name, tmp_path, camvid_dir / "val")
    size = describe_model(path).info.network_input_size
    namespace = f"/imported_{name}"
    node = NodeProcess({"model": str(path), "threads": 1}, env=ros_env,
                       namespace=namespace).start()
    client = FrameClient(context=ros_context, image_topic=f"{namespace}/image",
                         labels_topic=f"{namespace}/labels/image", name=f"client_{name}")
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        for _, rgb in camvid_frames(2):
            n = next(_stamps)
            stamp = Time(sec=1_700_000_000 + n, nanosec=0)
            reply = client.exchange(client.image_message(rgb, "rgb8", stamp, "cam"), 30.0)
            assert reply is not None, node.log_text()[-2000:]
            msg, _ = reply
            assert (msg.height, msg.width, msg.encoding) == (*rgb.shape[:2], "mono8")
            assert msg.header.stamp == stamp and msg.header.frame_id == "cam"
            labels = np.frombuffer(msg.data, np.uint8).reshape(rgb.shape[:2])
            expected, ties = framework_labels(name, model, rgb, size)
            assert_same_labels(labels, expected, ties)
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]
