"""Bags in and out (no ROS): bag-from-dataset on real CamVid frames, streaming with labels
matched by stamp, and every kind of bad bag or bad frame giving a clear error or a counted skip.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from textseg.cli import main
from textseg.replay.bagio import (
    IMAGE_TYPE,
    BagError,
    BagSource,
    DatasetMeta,
    RawBagWriter,
    _typestore,
)
from textseg.replay.dataset import (
    CAMVID_CLASSES,
    CAMVID_META,
    FrameBagWriter,
    bag_from_dataset,
    camvid_label_folder,
    image_message,
    labels_message,
)

START_NS = 1_700_000_000 * 10**9


def _pairs(camvid_dir: Path, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for path in sorted((camvid_dir / "val").glob("*.png"))[:n]:
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        labels = cv2.imread(str(camvid_dir / "valannot" / path.name), cv2.IMREAD_UNCHANGED)
        out.append((path.name, rgb, labels))
    return out


@pytest.fixture(scope="module")
def camvid_small(camvid_dir, tmp_path_factory) -> Path:
    """5 CamVid val frames and labels in a folder of their own (CamVid layout)."""
    root = tmp_path_factory.mktemp("camvid_small") / "camvid"
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    for path in sorted((camvid_dir / "val").glob("*.png"))[:5]:
        shutil.copy(path, root / "val" / path.name)
        shutil.copy(camvid_dir / "valannot" / path.name, root / "valannot" / path.name)
    return root


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_from_dataset_round_trip_on_camvid(camvid_dir, tmp_path, storage):
    bag = tmp_path / f"val_{storage}"
    result = bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                              storage=storage, rate_hz=20.0, limit=4, meta=CAMVID_META)
    assert result.frames == 4 and (bag / "metadata.yaml").is_file()
    expected = _pairs(camvid_dir, 4)
    with BagSource(bag) as source:
        assert (source.image_topic, source.labels_topic) == ("/camera/image", "/camera/labels")
        assert source.storage == storage and source.frame_count == 4
        assert source.meta.class_names == CAMVID_CLASSES and source.meta.ignore_id == 11
        frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for i, (frame, (_, rgb, labels)) in enumerate(zip(frames, expected, strict=True)):
        assert frame.problem is None and frame.frame_id == "camera"
        assert frame.stamp == (1_700_000_000, i * 50_000_000)  # 20 Hz
        assert frame.log_ns == START_NS + i * 50_000_000
        np.testing.assert_array_equal(frame.rgb(), rgb)
        np.testing.assert_array_equal(frame.labels, labels)


def test_bags_written_here_open_in_the_official_mcap_reader(camvid_dir, tmp_path):
    mcap_reader = pytest.importorskip("mcap.reader", reason="mcap (dev requirement) missing")
    bag = tmp_path / "val"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=3, meta=CAMVID_META)
    with open(bag / "val.mcap", "rb") as handle:
        reader = mcap_reader.make_reader(handle)
        summary = reader.get_summary()
        topics = sorted((c.topic, summary.schemas[c.schema_id].name)
                        for c in summary.channels.values())
        count = sum(1 for _ in reader.iter_messages())
    assert topics == [("/camera/image", "sensor_msgs/msg/Image"),
                      ("/camera/labels", "sensor_msgs/msg/Image")]
    assert count == 6


def test_cli_recognises_camvid_and_writes_compressed_frames(camvid_small, tmp_path, capsys):
    bag = tmp_path / "small_jpeg"
    code = main(["bag-from-dataset", str(camvid_small / "val"), str(bag), "--compressed",
                 "jpeg", "--rate", "5", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "recognised CamVid" in out and "ignore id     11" in out
    assert "next: textseg replay" in out
    with BagSource(bag) as source:
        assert source.image_topic == "/camera/image/compressed"
        assert source.image_type == "sensor_msgs/msg/CompressedImage"
        assert source.meta.ignore_id == 11 and source.meta.dataset == "camvid"
        frames = list(source.frames())
    assert len(frames) == 5 and all(f.labels is not None for f in frames)
    assert frames[0].rgb().shape == (360, 480, 3) and frames[0].size == (360, 480)


def test_cli_refuses_an_existing_bag_without_force_and_a_non_bag_even_with(camvid_small,
                                                                          tmp_path, capsys):
    bag = tmp_path / "b"
    args = ["bag-from-dataset", str(camvid_small / "val"), str(bag), "--quiet", "--limit", "1"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists (pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    other = tmp_path / "not_a_bag"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    assert main(["bag-from-dataset", str(camvid_small / "val"), str(other), "--force",
                 "--quiet"]) == 2
    assert "is not a ROS 2 bag" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "precious"


def test_dataset_errors_name_the_file(camvid_small, tmp_path):
    labels = tmp_path / "labels"
    shutil.copytree(camvid_small / "valannot", labels)
    missing = sorted(labels.iterdir())[1]
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=f"1 of 5 images have no label.*{missing.name}"):
        bag_from_dataset(camvid_small / "val", tmp_path / "x", labels)
    shutil.copy(camvid_small / "valannot" / missing.name, missing)
    small = cv2.imread(str(missing), cv2.IMREAD_UNCHANGED)[:100, :100]
    cv2.imwrite(str(missing), small)
    with pytest.raises(ValueError, match=f"label .*{missing.name} is 100x100 but its image"):
        bag_from_dataset(camvid_small / "val", tmp_path / "y", labels)
    assert not (tmp_path / "y").exists()  # no half-written bag left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".y.")]
    cv2.imwrite(str(missing), np.full((360, 480), 40, np.uint8))
    with pytest.raises(ValueError, match=r"holds ids \[40\], outside the 11 classes"):
        bag_from_dataset(camvid_small / "val", tmp_path / "z", labels, meta=CAMVID_META)


def _write(path: Path, messages, topics: dict[str, str], meta: DatasetMeta | None = None,
           storage: str = "mcap") -> Path:
    """A bag from (topic, log_ns, raw) messages."""
    with RawBagWriter(path, storage, meta.to_custom_data() if meta else None) as writer:
        for topic, msgtype in topics.items():
            writer.add_topic(topic, msgtype)
        for topic, log_ns, raw in messages:
            writer.write(topic, log_ns, raw)
    return path


def test_labels_are_matched_by_stamp_whatever_the_order(camvid_dir, tmp_path):
    pairs = _pairs(camvid_dir, 5)
    msgs = []
    for i, (_, rgb, labels) in enumerate(pairs):
        stamp = START_NS + i * 10**8
        image = ("/cam/image", stamp, image_message(rgb, stamp, "cam"))
        label = ("/cam/semantic", stamp + 1, labels_message(labels, stamp, "cam"))
        if i == 1:  # labels recorded before the image
            msgs += [("/cam/semantic", stamp - 1, labels_message(labels, stamp, "cam")),
                     image]
        elif i == 3:  # no labels for this frame
            msgs.append(image)
        else:
            msgs += [image, label]
    bag = _write(tmp_path / "ordered", msgs, {"/cam/image": IMAGE_TYPE,
                                              "/cam/semantic": IMAGE_TYPE})
    with BagSource(bag) as source:  # topics guessed from names: no textseg metadata here
        assert (source.image_topic, source.labels_topic) == ("/cam/image", "/cam/semantic")
        frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    for frame, (_, _, labels) in zip(frames, pairs, strict=True):
        if frame.index == 3:
            assert frame.labels is None and frame.problem is None
        else:
            np.testing.assert_array_equal(frame.labels, labels)


def test_streaming_reads_only_a_few_messages_ahead(camvid_dir, tmp_path):
    """The first frame comes out after a handful of messages, not after the whole bag."""
    bag = tmp_path / "ahead"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=30, meta=CAMVID_META)
    with BagSource(bag) as source:
        frames = source.frames()
        next(frames)
        assert source.messages_read <= 3
        for _ in range(10):
            next(frames)
        assert source.messages_read <= 2 * 11 + 2


def test_bad_frames_are_handed_out_with_a_reason(camvid_dir, tmp_path):
    store = _typestore()
    (_, rgb, labels), = [p for p in _pairs(camvid_dir, 1)]
    image_t = store.types[IMAGE_TYPE]
    good = lambda i: image_message(rgb, START_NS + i, "cam")  # noqa: E731
    msg = store.deserialize_cdr(good(1), IMAGE_TYPE)
    truncated = bytes(store.serialize_cdr(
        image_t(header=msg.header, height=msg.height, width=msg.width, encoding="rgb8",
                is_bigendian=0, step=msg.step, data=msg.data[:1000].copy()), IMAGE_TYPE))
    msg = store.deserialize_cdr(good(2), IMAGE_TYPE)
    yuv = bytes(store.serialize_cdr(
        image_t(header=msg.header, height=msg.height, width=msg.width, encoding="yuv422",
                is_bigendian=0, step=msg.step, data=msg.data), IMAGE_TYPE))
    messages = [
        ("/c/image", 0, good(0)), ("/c/labels", 0, labels_message(labels, START_NS, "cam")),
        ("/c/image", 1, truncated),
        ("/c/image", 2, yuv),
        ("/c/image", 3, good(3)),
        ("/c/labels", 3, labels_message(labels[:100, :100], START_NS + 3, "cam")),
        ("/c/image", 4, b"\x00\x01\x00\x00garbage"),
        ("/c/image", 5, good(0)),  # the same stamp as frame 0
    ]
    bag = _write(tmp_path / "bad", messages, {"/c/image": IMAGE_TYPE, "/c/labels": IMAGE_TYPE})
    with BagSource(bag) as source:
        frames = list(source.frames())
    reasons = [f.problem[0] if f.problem else None for f in frames]
    assert reasons == [None, "data_size", "encoding", "label_size", "cdr", "duplicate_stamp"]
    assert "differ from the image 480x360" in frames[3].problem[1]


def test_bag_level_problems_are_clear_errors(camvid_dir, tmp_path):
    store = _typestore()
    (_, rgb, labels), = _pairs(camvid_dir, 1)
    text = bytes(store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"),
                                     "std_msgs/msg/String"))
    bag = _write(tmp_path / "types", [("/chatter", 0, text),
                                      ("/cam/image", 1, image_message(rgb, 1, "c")),
                                      ("/cam/label", 1, image_message(rgb, 1, "c"))],
                 {"/chatter": "std_msgs/msg/String", "/cam/image": IMAGE_TYPE,
                  "/cam/label": IMAGE_TYPE})
    with pytest.raises(BagError, match="topic /nope .* is not in .*/chatter"):
        BagSource(bag, image_topic="/nope")
    with pytest.raises(BagError, match="/chatter has type std_msgs/msg/String, expected "
                                       "sensor_msgs/msg/Image or"):
        BagSource(bag, image_topic="/chatter")
    with pytest.raises(BagError, match="/chatter has type std_msgs/msg/String"):
        BagSource(bag, labels_topic="/chatter")
    with BagSource(bag) as source, pytest.raises(BagError, match="carries 'rgb8' images; "
                                                              "ground truth must be"):
        list(source.frames())
    with BagSource(bag, labels_topic="") as source:
        assert source.labels_topic is None and len(list(source.frames())) == 1
    two = _write(tmp_path / "two", [("/a/image", 0, image_message(rgb, 0, "a")),
                                    ("/b/image", 0, image_message(rgb, 0, "b"))],
                 {"/a/image": IMAGE_TYPE, "/b/image": IMAGE_TYPE})
    with pytest.raises(BagError, match="several camera topics .*--image-topic"):
        BagSource(two)
    none = _write(tmp_path / "none", [("/chatter", 0, text)], {"/chatter": "std_msgs/msg/String"})
    with pytest.raises(BagError, match="has no camera topic"):
        BagSource(none)
    with pytest.raises(BagError, match="bag not found"):
        BagSource(tmp_path / "missing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BagError, match="folder without metadata.yaml"):
        BagSource(tmp_path / "empty_dir")


def test_truncated_and_corrupt_bags_are_clear_errors(camvid_dir, tmp_path):
    bag = tmp_path / "full"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=6, meta=CAMVID_META, compress_storage=True)
    data = (bag / "full.mcap").read_bytes()
    # cut short, as when the recorder is killed: no footer
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match="cannot open .*cut.mcap.*truncated.*mcap recover"):
        BagSource(cut)
    # damaged in the middle: the index is fine, a compressed chunk is not
    damaged = tmp_path / "damaged.mcap"
    middle = len(data) // 2
    damaged.write_bytes(data[:middle] + bytes(4096) + data[middle + 4096:])
    with BagSource(damaged, labels_topic="") as source, \
            pytest.raises(BagError, match="corrupt or truncated: reading failed after"):
        list(source.frames())
    # not a bag at all
    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(BagError, match="cannot open .*junk.db3 as a ROS 2 bag"):
        BagSource(junk)


def test_frame_bag_writer_removes_its_partial_bag_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), \
            FrameBagWriter(tmp_path / "partial") as writer:
        writer.write_frame(np.zeros((8, 8, 3), np.uint8), START_NS, np.zeros((8, 8), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_written_bag_names_the_distro_it_was_written_for(tmp_path, storage):
    import yaml

    from textseg.ros_compat import bag_version, current_distro

    path = _write(tmp_path / "bag", [], {"/camera/image_raw": IMAGE_TYPE}, storage=storage)
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["ros_distro"] == current_distro() != "rosbags"
    assert info["version"] == bag_version()
