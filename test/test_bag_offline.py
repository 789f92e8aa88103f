"""`textseg eval-offline`: scoring a bag with the backend called directly (no ROS), the
report it writes, and its errors; on real CamVid frames with a real ONNX Runtime model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from textseg.cli import main
from textseg.engine import BackendOptions, load_backend
from textseg.replay.bagio import IMAGE_TYPE, BagSource, DatasetMeta, _typestore
from textseg.replay.dataset import (
    CAMVID_CLASSES,
    FrameBagWriter,
    bag_from_dataset,
    camvid_label_folder,
    image_message,
    labels_message,
)
from textseg.replay.metrics import ConfusionMatrix


def _reference_scores(bag: Path, model: Path) -> ConfusionMatrix:
    backend = load_backend(model, BackendOptions(backend="onnxruntime", threads=1))
    matrix = ConfusionMatrix(11, 11)
    with BagSource(bag) as source:
        for frame in source.frames():
            matrix.update(backend.infer(frame.rgb()).labels, frame.labels)
    backend.close()
    return matrix


def test_eval_offline_scores_and_reports(camvid_val6_bag, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval-offline", str(camvid_val6_bag), "--model", str(tiny_model_path),
                 "--threads", "1", "--output", str(out), "--quiet", "--strip", "3"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads((out / "report.json").read_text())
    reference = _reference_scores(camvid_val6_bag, tiny_model_path).summary()
    assert data["metrics"]["miou"] == pytest.approx(reference.miou, abs=1e-6)
    assert data["metrics"]["pixel_accuracy"] == pytest.approx(reference.pixel_accuracy,
                                                              abs=1e-6)
    assert [c["name"] for c in data["metrics"]["per_class"]] == list(CAMVID_CLASSES)
    frames = data["frames"]
    assert (frames["in_bag"], frames["answered"], frames["scored"], frames["skipped"]) == \
        (6, 6, 6, 0)
    assert data["context"]["ignore_id"] == 11
    assert data["context"]["ignore_id_source"] == "the bag's metadata"
    assert data["latency_ms"]["count"] == 6 and data["inference_ms"]["p50"] > 0
    assert data["throughput"]["fps"] > 0
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["scored"] * 6
    markdown = (out / "report.md").read_text()
    for needle in ("# Offline evaluation: camvid_val6", "**mIoU**", "## Per-class IoU",
                   "![per-class IoU](class_iou.png)", "![latency histogram](latency.png)",
                   "![frames](frames.png)", "## Closing note", "not trained"):
        assert needle in markdown
    for png in ("class_iou.png", "latency.png", "frames.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.shape[0] > 100 and image.std() > 5
    strip = cv2.imread(str(out / "frames.png"))
    assert strip.shape[1] > 4 * 320  # image | ground truth | prediction | overlay
    assert "mIoU %" in printed and "report" in printed
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_a_bag_without_ground_truth_reports_coverage_and_latency(camvid_dir, tiny_model_path,
                                                                 tmp_path):
    bag = tmp_path / "frames_only"
    bag_from_dataset(camvid_dir / "val", bag, None, limit=3)
    out = tmp_path / "r"
    assert main(["eval-offline", str(bag), "--model", str(tiny_model_path), "--output",
                 str(out), "--quiet"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["frames"]["answered"] == 3 and data["frames"]["scored"] == 0
    assert data["metrics"]["miou"] is None and data["latency_ms"]["count"] == 3
    markdown = (out / "report.md").read_text()
    assert "not scored: no frame had ground truth" in markdown
    assert "coverage and latency only" in markdown


def test_bad_frames_are_counted_and_reported_not_fatal(camvid_dir, tiny_model_path, tmp_path):
    paths = sorted((camvid_dir / "val").glob("*.png"))[:4]
    bag = tmp_path / "mixed"
    store = _typestore()
    with FrameBagWriter(bag, meta=DatasetMeta(class_names=CAMVID_CLASSES,
                                              ignore_id=11)) as writer:
        for i, path in enumerate(paths):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            labels = cv2.imread(str(camvid_dir / "valannot" / path.name),
                                cv2.IMREAD_UNCHANGED)
            stamp = 1_700_000_000 * 10**9 + i * 10**8
            if i == 1:
                labels = labels[:180, :240]  # half-size labels
            if i == 2:  # a frame whose data was cut short
                msg = store.deserialize_cdr(image_message(rgb, stamp, "camera"), IMAGE_TYPE)
                msg = type(msg)(header=msg.header, height=msg.height, width=msg.width,
                                encoding=msg.encoding, is_bigendian=0, step=msg.step,
                                data=msg.data[:5000].copy())
                raw = bytes(store.serialize_cdr(msg, IMAGE_TYPE))
                writer.write("/camera/image", stamp, raw)
                writer.write("/camera/labels", stamp, labels_message(labels, stamp, "camera"))
                continue
            if i == 3:
                labels = labels.copy()
                labels[0, 0] = 200  # one corrupt ground-truth pixel
            writer.write_frame(rgb, stamp, labels)
    out = tmp_path / "r"
    assert main(["eval-offline", str(bag), "--model", str(tiny_model_path), "--output",
                 str(out), "--quiet"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["frames"]["scored"] == 1
    assert data["frames"]["skipped_by_reason"] == {"data_size": 1, "label_size": 1,
                                                   "label_values": 1}
    markdown = (out / "report.md").read_text()
    assert "skipped, `label_size`: 1 (e.g. frame 1: labels 240x180 differ" in markdown
    assert "skipped, `label_values`: 1" in markdown and "ids 200" in markdown


def test_class_count_mismatch_is_a_clear_error(camvid_dir, tiny_model_path, tmp_path, capsys):
    bag = tmp_path / "cityscapes_like"
    names = tuple(f"class{i}" for i in range(19))
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=1, meta=DatasetMeta(class_names=names, ignore_id=255))
    assert main(["eval-offline", str(bag), "--model", str(tiny_model_path), "--quiet",
                 "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "ground truth has 19 classes" in err and "the model has 11" in err
    assert "Traceback" not in err


def test_labels_for_another_class_set_stop_early_with_the_ids(camvid_dir, tiny_model_path,
                                                              tmp_path, capsys):
    """CamVid labels (void = 11) scored with the default ignore id 255: id 11 is unknown."""
    bag = tmp_path / "no_meta"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=5)
    code = main(["eval-offline", str(bag), "--model", str(tiny_model_path), "--quiet",
                 "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "ground truth holds class ids 11" in err and "--ignore-id" in err
    assert main(["eval-offline", str(bag), "--model", str(tiny_model_path), "--quiet",
                 "--ignore-id", "11", "--output", str(tmp_path / "r")]) == 0


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_model.onnx"], "model file not found"),
    (["--ignore-id", "3"], "ignore id 3 (from --ignore-id) is one of the model's 11"),
    (["--image-topic", "/nope"], "topic /nope (from --image-topic) is not in"),
])
def test_argument_errors_are_one_line(camvid_val6_bag, tiny_model_path, tmp_path, capsys, args,
                                      message):
    argv = ["eval-offline", str(camvid_val6_bag), "--quiet", "--output", str(tmp_path / "r")]
    if "--model" not in args:
        argv += ["--model", str(tiny_model_path)]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ignore_id_option_is_validated_by_the_parser(camvid_val6_bag, capsys):
    with pytest.raises(SystemExit):
        main(["eval-offline", str(camvid_val6_bag), "--ignore-id", "300"])
    assert "the ignore id must be 0..255" in capsys.readouterr().err


def test_nan_free_json(camvid_val6_bag, tiny_model_path, tmp_path):
    out = tmp_path / "r"
    assert main(["eval-offline", str(camvid_val6_bag), "--model", str(tiny_model_path),
                 "--output", str(out), "--quiet", "--limit", "2"]) == 0
    text = (out / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)
    assert np.isfinite(json.loads(text)["latency_ms"]["p99"])
