"""textseg.ros_compat over real DDS, on each tested distro, and bags across the two.

- The type hashes this distro's rclpy reports for live endpoints are the ones the bags textseg
  writes here record (rosbags' typestore of the same distro).
- A bag written with one distro's stack (frames, and the labels that distro's node published,
  recorded by `textseg replay --record`) replays through the other distro's node, and back:
  each node's labels are the other's, frame for frame. The other distro runs from its own venv
  (.venv for Jazzy, .venv-kilted for Kilted) in processes of its own; where that venv is absent
  the test skips, unless TEXTSEG_REQUIRE_DISTROS=1 (.ci/run's Kilted leg) makes it fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from textseg import ros_compat  # noqa: E402
from textseg.cli import main  # noqa: E402
from textseg.replay.bagio import COMPRESSED_TYPE, IMAGE_TYPE, RawBagWriter  # noqa: E402
from textseg.replay.dataset import CAMVID_META, bag_from_dataset, camvid_label_folder  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
LABELS_TOPIC = "/textseg/labels/image"


def _metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _topic_hashes(bag: Path) -> dict[str, str]:
    return {t["topic_metadata"]["name"]: t["topic_metadata"]["type_description_hash"]
            for t in _metadata(bag)["topics_with_message_count"]}


def test_live_type_hashes_are_the_ones_our_bags_record(ros_context, tmp_path):
    from sensor_msgs.msg import CompressedImage, Image

    node = rclpy.create_node("type_hash_probe", namespace="/compat", context=ros_context)
    try:
        live = {}
        for name, cls, msgtype in (("image", Image, IMAGE_TYPE),
                                   ("image/compressed", CompressedImage, COMPRESSED_TYPE)):
            topic = f"/compat/{name}"
            node.create_publisher(cls, topic, 1)
            (info,) = node.get_publishers_info_by_topic(topic)
            live[msgtype] = ros_compat.endpoint_type_hash(info)
    finally:
        node.destroy_node()
    store = ros_compat.bag_typestore()
    assert live == {t: store.hash_rihs01(t) for t in live}
    assert all(h.startswith("RIHS01_") for h in live.values())

    with RawBagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/cam/image", IMAGE_TYPE)
        writer.add_topic("/cam/image/compressed", COMPRESSED_TYPE)
    assert _metadata(tmp_path / "bag")["version"] == ros_compat.bag_version()
    assert _topic_hashes(tmp_path / "bag") == {"/cam/image": live[IMAGE_TYPE],
                                                "/cam/image/compressed": live[COMPRESSED_TYPE]}


# --- across distros ---------------------------------------------------------------------------
def _other_distro_venv() -> tuple[str, Path]:
    here = ros_compat.current_distro()
    (other,) = [d for d in ros_compat.TESTED_DISTROS if d != here]
    venv = ROOT / (".venv" if other == ros_compat.DEFAULT_DISTRO else f".venv-{other}")
    if not (venv / "bin" / "textseg").exists():
        reason = (f"no ROS 2 {other} venv at {venv.name}/ (ROS_DISTRO={other} "
                  f"./scripts/setup.sh makes it)")
        if os.environ.get("TEXTSEG_REQUIRE_DISTROS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return other, venv


def _other_env(ros_env: dict[str, str]) -> dict[str, str]:
    """This machine's ROS environment without what points into this distro's venv and build:
    the other venv's Python sets its own library path when it starts (ros_wheels_bootstrapper)
    and has no vision_msgs, which the replay does not need."""
    drop = ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "LD_LIBRARY_PATH", "PYTHONPATH",
            "TEXTSEG_VISION_MSGS", "AMENT_PREFIX_PATH", "VIRTUAL_ENV")
    return {k: v for k, v in ros_env.items() if k not in drop}


def _replay_argv(bag: Path, model: Path, record: Path, out: Path) -> list[str]:
    return ["replay", str(bag), "--image-topic", "/camera/image", "--labels-topic", "",
            "--model", str(model), "--threads", "1", "--no-offline", "--record", str(record),
            "--output", str(out), "--quiet"]


def _labels_by_stamp(bag: Path) -> dict[tuple[int, int], bytes]:
    from rosbags.rosbag2 import Reader

    store = ros_compat.bag_typestore()
    labels = {}
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == LABELS_TOPIC]
        for connection, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            assert msg.encoding == "mono8"
            labels[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = bytes(msg.data)
    return labels


def test_a_bag_written_on_one_distro_replays_on_the_other(camvid_dir, tiny_model_path, ros_env,
                                                          tmp_path, capsys):
    other, venv = _other_distro_venv()
    here = ros_compat.current_distro()
    bag = tmp_path / "camvid4"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"), limit=4,
                     meta=CAMVID_META)

    # 1. This distro's node answers the frames; its labels are recorded by this stack.
    here_rec = tmp_path / f"{here}_rec"
    code = main(_replay_argv(bag, tiny_model_path, here_rec, tmp_path / "out_here"))
    assert code == 0, capsys.readouterr()
    here_labels = _labels_by_stamp(here_rec)
    assert len(here_labels) == 4

    # 2. That bag, played through the other distro's node by the other distro's replay.
    other_rec = tmp_path / f"{other}_rec"
    result = subprocess.run(
        [str(venv / "bin" / "textseg"),
         *_replay_argv(here_rec, tiny_model_path, other_rec, tmp_path / "out_other")],
        env=_other_env(ros_env), capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out_other" / "report.json").read_text())
    assert report["frames"]["answered"] == 4
    assert _labels_by_stamp(other_rec) == here_labels  # the other node, the same labels

    # 3. The other distro's bag, back through this distro's node.
    back_rec = tmp_path / "back_rec"
    code = main(_replay_argv(other_rec, tiny_model_path, back_rec, tmp_path / "out_back"))
    assert code == 0, capsys.readouterr()
    assert _labels_by_stamp(back_rec) == here_labels

    # Each bag is in its own distro's rosbag2 format, with the same type hashes.
    assert _metadata(here_rec)["version"] == ros_compat.bag_version(here)
    assert _metadata(other_rec)["version"] == ros_compat.bag_version(other)
    assert _topic_hashes(here_rec) == _topic_hashes(other_rec)
