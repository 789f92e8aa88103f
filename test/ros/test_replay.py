"""`textseg replay`: real CamVid frames from a bag, played through a real segmentation_node
process over real DDS (this machine only), scored, compared with the offline run, reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from textseg.cli import main  # noqa: E402
from textseg.replay.bagio import IMAGE_TYPE, BagSource, DatasetMeta, _typestore  # noqa: E402
from textseg.replay.dataset import (  # noqa: E402
    CAMVID_META,
    FrameBagWriter,
    bag_from_dataset,
    camvid_label_folder,
    image_message,
)

pytestmark = pytest.mark.ros


def _replay_nodes() -> list[int]:
    """PIDs of segmentation_node processes a replay from this process started."""
    marker = f"__ns:=/textseg_replay_{os.getpid()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lockstep_replay_through_the_node_agrees_with_offline(camvid_val6_bag, tiny_model_path,
                                                              tmp_path, capsys):
    out = tmp_path / "report"
    code, printed, err = _run(["replay", str(camvid_val6_bag), "--model", str(tiny_model_path),
                               "--threads", "1", "--output", str(out), "--quiet"], capsys)
    assert code == 0, printed + err
    assert _replay_nodes() == []  # the node process was stopped
    data = json.loads((out / "report.json").read_text())
    frames = data["frames"]
    assert (frames["in_bag"], frames["sent"], frames["answered"], frames["dropped"],
            frames["skipped"], frames["scored"]) == (6, 6, 6, 0, 0, 6)
    comparison = data["comparison"]
    assert comparison["frames_compared"] == 6
    assert abs(comparison["miou_difference_points"]) <= 0.1
    assert comparison["identical_predictions"] == 6  # same ONNX graph, same threads
    assert comparison["replay_miou"] == pytest.approx(comparison["offline_miou"], abs=1e-9)
    assert data["latency_ms"]["count"] == 6 and data["latency_ms"]["p50"] > 0
    assert comparison["ros_overhead_vs_inference_ms"]["count"] == 6
    assert data["run"]["mode"] == "lockstep" and data["run"]["sim_time"] is True
    assert data["run"]["node_exit_code"] == 0
    assert data["node"]["inference_p50_ms"] is not None
    with BagSource(camvid_val6_bag) as source:
        stamps = [f"{f.stamp[0]}.{f.stamp[1]:09d}" for f in source.frames()]
    lines = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [line["stamp"] for line in lines] == stamps  # answers matched by recorded stamp
    markdown = (out / "report.md").read_text()
    for needle in ("# Replay evaluation: camvid_val6", "segmentation_node", "## Closing note",
                   "Measured ROS overhead", "(within 0.1: yes)", "offline IoU %",
                   "identical (CRC-32 of the label image) on 6 of 6 frames"):
        assert needle in markdown
    assert (out / "offline" / "report.md").is_file()
    for png in ("class_iou.png", "latency.png", "frames.png"):
        assert cv2.imread(str(out / png)) is not None
    assert "ROS overhead" in printed and "identical predictions" in printed


def test_rate_mode_on_sim_time_records_the_outputs(camvid_dir, tiny_model_path, tmp_path,
                                                   capsys):
    bag = tmp_path / "ten"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=10, rate_hz=10.0, meta=CAMVID_META)
    record = tmp_path / "outputs"
    out = tmp_path / "report"
    code, printed, err = _run(["replay", str(bag), "--model", str(tiny_model_path),
                               "--rate", "2", "--record", str(record), "--no-offline",
                               "--output", str(out), "--quiet"], capsys)
    assert code == 0, printed + err
    data = json.loads((out / "report.json").read_text())
    frames = data["frames"]
    assert frames["sent"] == 10 and frames["answered"] >= 1
    assert frames["answered"] + frames["dropped"] == 10
    assert data["run"]["mode"] == "rate" and data["run"]["rate"] == 2.0
    assert data["run"]["schedule_lag_ms"]["count"] == 10
    # The node ran on the bag's clock: its diagnostics are stamped with bag time.
    assert 1_700_000_000 <= data["node"]["diagnostics_stamp_s"] <= 1_700_000_001
    assert "comparison" not in data and "No offline comparison" in (out / "report.md").read_text()
    recorded = data["run"]["recorded_messages"]
    assert recorded["/camera/image"] == 10
    assert recorded["/textseg/labels/image"] == frames["answered"]
    store = _typestore()
    with BagSource(record, image_topic="/camera/image", labels_topic="") as source:
        assert set(source.topics) == {"/camera/image", "/textseg/labels/image",
                                      "/textseg/labels/color", "/textseg/ground_truth/color"}
        input_stamps = {f.stamp for f in source.frames()}
    from rosbags.rosbag2 import Reader

    with Reader(record) as reader:
        connections = [c for c in reader.connections if c.topic == "/textseg/labels/image"]
        for _, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, IMAGE_TYPE)
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in input_stamps
            assert msg.encoding == "mono8" and (msg.height, msg.width) == (360, 480)
    mcap_reader = pytest.importorskip("mcap.reader", reason="mcap (dev requirement) missing")
    with open(record / "outputs.mcap", "rb") as handle:
        assert sum(1 for _ in mcap_reader.make_reader(handle).iter_messages()) == sum(
            recorded.values())


def test_compressed_frames_without_ground_truth(camvid_dir, tiny_model_path, tmp_path, capsys):
    bag = tmp_path / "jpeg"
    bag_from_dataset(camvid_dir / "val", bag, None, limit=3, compressed="jpeg")
    out = tmp_path / "report"
    code, printed, err = _run(["replay", str(bag), "--model", str(tiny_model_path),
                               "--no-sim-time", "--threads", "1", "--output", str(out),
                               "--quiet"], capsys)
    assert code == 0, printed + err
    data = json.loads((out / "report.json").read_text())
    assert data["context"]["image_type"] == "sensor_msgs/msg/CompressedImage"
    assert data["frames"]["answered"] == 3 and data["frames"]["scored"] == 0
    assert data["latency_ms"]["count"] == 3 and data["metrics"]["miou"] is None
    assert data["comparison"]["identical_predictions"] == 3
    assert "coverage and latency only" in (out / "report.md").read_text()


def test_bad_frames_are_skipped_and_counted(camvid_dir, tiny_model_path, tmp_path, capsys):
    paths = sorted((camvid_dir / "val").glob("*.png"))[:4]
    store = _typestore()
    bag = tmp_path / "mixed"
    with FrameBagWriter(bag, meta=CAMVID_META) as writer:
        for i, path in enumerate(paths):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            labels = cv2.imread(str(camvid_dir / "valannot" / path.name),
                                cv2.IMREAD_UNCHANGED)
            stamp = 1_700_000_000 * 10**9 + i * 10**8
            if i == 1:
                msg = store.deserialize_cdr(image_message(rgb, stamp, "camera"), IMAGE_TYPE)
                msg = type(msg)(header=msg.header, height=msg.height, width=msg.width,
                                encoding="rgb8", is_bigendian=0, step=msg.step,
                                data=msg.data[:999].copy())
                writer.write("/camera/image", stamp, bytes(store.serialize_cdr(msg,
                                                                                IMAGE_TYPE)))
                continue
            writer.write_frame(rgb, stamp, labels[:100] if i == 2 else labels)
    out = tmp_path / "report"
    code, printed, err = _run(["replay", str(bag), "--model", str(tiny_model_path),
                               "--threads", "1", "--output", str(out), "--quiet"], capsys)
    assert code == 0, printed + err
    data = json.loads((out / "report.json").read_text())
    assert data["frames"]["sent"] == 2 and data["frames"]["answered"] == 2
    assert data["frames"]["skipped_by_reason"] == {"data_size": 1, "label_size": 1}
    assert data["comparison"]["frames_compared"] == 2
    assert "skipped data_size: 1" in printed


def test_errors_come_before_any_node_is_started(camvid_dir, tiny_model_path, tmp_path, capsys):
    bag = tmp_path / "nineteen"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=1, meta=DatasetMeta(class_names=tuple(f"c{i}" for i in range(19)),
                                               ignore_id=255))
    code, _, err = _run(["replay", str(bag), "--model", str(tiny_model_path), "--quiet",
                         "--output", str(tmp_path / "r")], capsys)
    assert code == 2 and "ground truth has 19 classes" in err and "Traceback" not in err
    code, _, err = _run(["replay", str(tmp_path / "missing_bag"), "--quiet"], capsys)
    assert code == 2 and "bag not found" in err
    with pytest.raises(SystemExit):
        main(["replay", str(bag), "--rate", "-1"])
    assert "the rate factor must be positive" in capsys.readouterr().err
    assert _replay_nodes() == []


def test_a_node_that_dies_at_start_is_reported_with_its_log(camvid_val6_bag, tiny_model_path,
                                                            tmp_path, monkeypatch):
    from textseg.client.process import NodeProcess
    from textseg.replay import ros_replay

    def broken_node(session):
        return NodeProcess({"model": str(tmp_path / "vanished.onnx")}, env=session.env,
                           namespace=session.namespace)

    monkeypatch.setattr(ros_replay._Session, "_node_process", broken_node)
    options = ros_replay.ReplayOptions(bag=camvid_val6_bag, model=str(tiny_model_path),
                                       show_progress=False, startup_timeout=60)
    with pytest.raises(RuntimeError, match=r"(?s)segmentation_node exited with code 1 while "
                                           r"starting; its log ends:.*vanished\.onnx"):
        ros_replay.run_replay(options, tmp_path / "frames.jsonl")
    assert _replay_nodes() == []
    assert not (tmp_path / "frames.jsonl").exists()


def test_demo_replays_camvid_through_the_node_and_scores_it(camvid_dir, tiny_model_path,
                                                            tmp_path, capsys):
    """`textseg demo` = bag-from-dataset + replay: real frames, real node, real DDS, scored."""
    out, bags = tmp_path / "demo", tmp_path / "bags"
    argv = ["demo", "--images", str(camvid_dir / "val"), "--model", str(tiny_model_path),
            "--output", str(out), "--bags", str(bags), "--limit", "4", "--quiet"]
    code, printed, err = _run(argv, capsys)
    assert code == 0, printed + err
    assert _replay_nodes() == []
    data = json.loads((out / "report.json").read_text())
    assert data["frames"]["answered"] == data["frames"]["scored"] == 4
    assert "mIoU %" in printed and "per-class IoU %: sky " in printed
    assert "latency p90 / p99 ms" in printed and "ROS overhead" in printed
    assert (out / "frames.png").stat().st_size > 10_000  # image | truth | prediction | overlay
    assert (bags / "camvid_val_first4" / "metadata.yaml").is_file()
    # A second run reuses the bag instead of writing it again.
    code, printed, err = _run(argv, capsys)
    assert code == 0 and "writing" not in printed, printed + err


def test_demo_without_the_dataset_says_where_it_comes_from(tmp_path, capsys):
    code, printed, err = _run(["demo", "--images", str(tmp_path / "nowhere" / "val")], capsys)
    assert code == 2
    assert "CamVid val frames not found" in err and "valannot" in err
    assert "Traceback" not in err and printed == ""
    (tmp_path / "val").mkdir()
    code, _, err = _run(["demo", "--images", str(tmp_path / "val")], capsys)
    assert code == 2 and "no ground-truth folder" in err
