"""A model trained from tile tags (the weak mode, docs/weak_supervision.md) runs in the node and in
`textseg replay` unchanged: a real segmentation_node process over DDS publishes the labels the
PyTorch checkpoint gives (except at numerical ties), and a replay of CamVid val frames through
it agrees with the offline run."""

from __future__ import annotations

import json

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("textseg_training", reason="training package not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from import_recipes import TIE_MARGIN, assert_same_labels  # noqa: E402

from textseg.cli import main  # noqa: E402
from textseg.client.frame_client import FrameClient  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros


def checkpoint_labels(checkpoint, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, tie mask) of the weak checkpoint in PyTorch: the frame resized to the exported
    size, the tower's normalisation, the logits bilinear back to the frame, argmax."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from textseg_training.weak.export import load_weak_model

    model, _, _ = load_weak_model(checkpoint)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(96, 128), mode="bilinear", align_corners=False)
    mean = torch.tensor(model.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((x / 255.0 - mean) / std)
    logits = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    top2 = torch.topk(logits, 2, dim=1).values[0].numpy()
    margin = (top2[0] - top2[1]) / float(logits.abs().max())
    return logits.argmax(1)[0].numpy().astype(np.uint8), margin <= TIE_MARGIN


def test_a_weak_model_runs_in_the_node_with_its_checkpoints_labels(
        tiny_weak_run, camvid_frames, ros_env, ros_context):
    checkpoint, artifact = tiny_weak_run
    namespace = "/weak_model"
    node = NodeProcess({"model": str(artifact), "threads": 1}, env=ros_env,
                       namespace=namespace).start()
    client = FrameClient(context=ros_context, image_topic=f"{namespace}/image",
                         labels_topic=f"{namespace}/labels/image", name="client_weak")
    try:
        client.wait_for_node(timeout=60.0, alive=node.alive)
        for n, (_, rgb) in enumerate(camvid_frames(2), start=1):
            stamp = Time(sec=1_700_000_000 + n, nanosec=0)
            reply = client.exchange(client.image_message(rgb, "rgb8", stamp, "cam"), 30.0)
            assert reply is not None, node.log_text()[-2000:]
            msg, _ = reply
            assert (msg.height, msg.width, msg.encoding) == (*rgb.shape[:2], "mono8")
            assert msg.header.stamp == stamp
            labels = np.frombuffer(msg.data, np.uint8).reshape(rgb.shape[:2])
            assert_same_labels(labels, *checkpoint_labels(checkpoint, rgb))
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]


def test_a_weak_model_replays_a_bag_in_agreement_with_offline(tiny_weak_run, camvid_val6_bag,
                                                               tmp_path, capsys):
    _, artifact = tiny_weak_run
    out = tmp_path / "report"
    code = main(["replay", str(camvid_val6_bag), "--model", str(artifact), "--threads", "1",
                 "--output", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    data = json.loads((out / "report.json").read_text())
    frames = data["frames"]
    assert (frames["sent"], frames["answered"], frames["dropped"]) == (6, 6, 0)
    comparison = data["comparison"]
    assert comparison["identical_predictions"] == 6  # same ONNX graph as the offline run
    assert comparison["replay_miou"] == pytest.approx(comparison["offline_miou"], abs=1e-9)
    assert data["run"]["node_exit_code"] == 0
