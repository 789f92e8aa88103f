"""What replay and offline evaluation share: per-frame bookkeeping and the run's figures.

A `Scorer` takes each frame's outcome (scored, answered without ground truth, dropped,
skipped with a reason), keeps the confusion matrix, compact per-frame series (index, CRC-32
of the prediction, latency: 20 bytes a frame, never images), a few thumbnails for the strip
picture, and streams one JSON line per frame to `frames.jsonl`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from textseg.imaging import colorize, overlay
from textseg.replay.bagio import Frame, format_stamp
from textseg.replay.metrics import (
    ConfusionMatrix,
    LabelValueError,
    Samples,
    distribution,
    scores,
)

THUMB_WIDTH = 320


@dataclass
class StripRow:
    index: int
    stamp: str
    panels: list[np.ndarray]  # RGB thumbnails: image, [ground truth], prediction, overlay


def strip_indices(frame_count: int, rows: int) -> set[int]:
    if frame_count <= 0 or rows <= 0:
        return set()
    if rows >= frame_count:
        return set(range(frame_count))
    return {round(i * (frame_count - 1) / (rows - 1)) for i in range(rows)} if rows > 1 else {0}


def thumbnail(array_: np.ndarray, width: int = THUMB_WIDTH, nearest: bool = False) -> np.ndarray:
    h, w = array_.shape[:2]
    if w <= width:
        return np.ascontiguousarray(array_)
    size = (width, max(1, round(h * width / w)))
    return cv2.resize(array_, size, interpolation=cv2.INTER_NEAREST if nearest
                      else cv2.INTER_AREA)


def prediction_crc(labels: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(labels).data) & 0xFFFFFFFF


class Scorer:
    def __init__(self, class_names: tuple[str, ...], palette, ignore_id: int,
                 frame_count: int, strip_rows: int = 4, frames_log: Path | None = None,
                 overlay_alpha: float = 0.5, keep_frame_matrices: bool = False) -> None:
        self.class_names = tuple(class_names)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.confusion = ConfusionMatrix(len(class_names), ignore_id)
        self.ignore_id = ignore_id
        self.overlay_alpha = overlay_alpha
        self.frame_count = frame_count
        self._strip_wanted = strip_indices(frame_count, strip_rows)
        self.strip: list[StripRow] = []
        self.skipped: dict[str, int] = {}
        self.skip_examples: dict[str, str] = {}
        self.dropped: dict[str, int] = {}
        self.frames_seen = 0
        self.scored = 0
        self.without_gt = 0
        self.latency = Samples()  # seconds: replay publish -> labels; offline decode + infer
        self.inference = Samples()  # seconds: backend.infer alone (offline)
        self.answered_index = array("q")
        self.answered_crc = array("I")  # 4 bytes each
        # frame index -> its confusion matrix, for scores over windows of frames (health)
        self.frame_matrices: dict[int, np.ndarray] | None = {} if keep_frame_matrices else None
        self._log = None
        self._log_tmp: str | None = None
        self.frames_log = frames_log
        if frames_log is not None:
            frames_log.parent.mkdir(parents=True, exist_ok=True)
            fd, self._log_tmp = tempfile.mkstemp(dir=frames_log.parent,
                                                 prefix=f".{frames_log.name}.", suffix=".tmp")
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; use the usual mode
            self._log = os.fdopen(fd, "w", encoding="utf-8")

    # --- per frame -----------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def wants_strip(self, index: int) -> bool:
        return index in self._strip_wanted

    def _write(self, record: dict) -> None:
        if self._log is not None:
            self._log.write(json.dumps(record, separators=(",", ":")) + "\n")

    def seen(self) -> None:
        self.frames_seen += 1

    def skip(self, frame: Frame, reason: str, message: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skip_examples.setdefault(reason, f"frame {frame.index}: {message}")
        self._write({"index": frame.index, "stamp": format_stamp(frame.stamp),
                     "status": "skipped", "reason": reason})

    def drop(self, index: int, stamp: tuple[int, int], why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1
        self._write({"index": index, "stamp": format_stamp(stamp), "status": "dropped",
                     "reason": why})

    def answered(self, frame_index: int, stamp: tuple[int, int], prediction: np.ndarray,
                 ground_truth: np.ndarray | None, latency_s: float,
                 inference_s: float | None = None, rgb: np.ndarray | None = None) -> None:
        """One prediction for a frame (ground truth None when the bag has none for it).

        Ground truth with ids outside the model's classes (and not the ignore id) skips the
        frame (`label_values`); when the first frames with ground truth all do, the labels
        were made for another class set and LabelValueError is raised."""
        record: dict = {"index": frame_index, "stamp": format_stamp(stamp),
                        "latency_ms": round(latency_s * 1000, 3)}
        if ground_truth is not None:
            try:
                frame_matrix = self.confusion.update(prediction, ground_truth)
            except LabelValueError as exc:
                self._label_value_skip(frame_index, stamp, exc)
                return
            if self.frame_matrices is not None:
                self.frame_matrices[frame_index] = frame_matrix.copy()
            frame_scores = scores(frame_matrix)
            record.update(status="scored", pixel_accuracy=_rounded(frame_scores.pixel_accuracy),
                          miou=_rounded(frame_scores.miou))
            self.scored += 1
        else:
            record["status"] = "answered"
            self.without_gt += 1
        if inference_s is not None:
            record["inference_ms"] = round(inference_s * 1000, 3)
            self.inference.add(inference_s)
        crc = prediction_crc(prediction)
        record["crc32"] = crc
        self.latency.add(latency_s)
        self.answered_index.append(frame_index)
        self.answered_crc.append(crc)
        self._write(record)
        if rgb is not None and self.wants_strip(frame_index):
            self.add_strip(frame_index, stamp, rgb, ground_truth, prediction)

    SYSTEMATIC_LABEL_ERRORS = 3

    def _label_value_skip(self, index: int, stamp, exc: LabelValueError) -> None:
        reason = "label_values"
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skip_examples.setdefault(reason, f"frame {index}: {exc}")
        self._write({"index": index, "stamp": format_stamp(stamp), "status": "skipped",
                     "reason": reason})
        if self.scored == 0 and self.skipped[reason] >= self.SYSTEMATIC_LABEL_ERRORS:
            raise LabelValueError(f"the first {self.skipped[reason]} frames with ground truth "
                                  f"all hold ids outside the model's classes; frame {index}: "
                                  f"{exc}")

    def add_strip(self, index: int, stamp, rgb: np.ndarray, ground_truth: np.ndarray | None,
                  prediction: np.ndarray) -> None:
        image = thumbnail(rgb)
        size = (image.shape[1], image.shape[0])

        def small(labels: np.ndarray) -> np.ndarray:
            return cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)

        pred = colorize(small(prediction), self.palette)
        panels = [image]
        if ground_truth is not None:
            gt = small(ground_truth)
            gt_color = colorize(gt, self.palette)
            gt_color[gt == self.ignore_id] = 0  # ignored pixels: black
            panels.append(gt_color)
        panels += [pred, overlay(image, pred, self.overlay_alpha)]
        self.strip.append(StripRow(index, format_stamp(stamp), panels))

    # --- the run -------------------------------------------------------------------------

    @property
    def answered_count(self) -> int:
        return len(self.answered_index)

    def close(self) -> None:
        """Finish frames.jsonl (renamed into place: readers never see half of it)."""
        if self._log is not None:
            self._log.flush()
            os.fsync(self._log.fileno())
            self._log.close()
            self._log = None
            os.replace(self._log_tmp, self.frames_log)

    def abort(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
            Path(self._log_tmp).unlink(missing_ok=True)

    def answered_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(frame index, crc32, latency s, inference s or None) of the answered frames,
        sorted by frame index."""
        index = (np.frombuffer(self.answered_index, np.int64) if self.answered_index
                 else np.zeros(0, np.int64))
        crc = (np.frombuffer(self.answered_crc, np.uint32) if self.answered_crc
               else np.zeros(0, np.uint32))
        order = np.argsort(index, kind="stable")
        inference = self.inference.numpy()
        inference = inference[order] if inference.size == index.size and index.size else None
        return index[order], crc[order].astype(np.int64), self.latency.numpy()[order], inference

    def figures(self) -> dict:
        """Every number of the run, JSON-ready."""
        s = self.confusion.summary()
        per_class = []
        for i, name in enumerate(self.class_names):
            per_class.append({"id": i, "name": name, "iou": _rounded(s.iou[i]),
                              "gt_pixels": int(s.gt_pixels[i])})
        return {
            "frames": {
                "in_bag": self.frame_count,
                "seen": self.frames_seen,
                "answered": self.answered_count,
                "scored": self.scored,
                "answered_without_ground_truth": self.without_gt,
                "dropped": sum(self.dropped.values()),
                "dropped_by_reason": dict(sorted(self.dropped.items())),
                "skipped": sum(self.skipped.values()),
                "skipped_by_reason": dict(sorted(self.skipped.items())),
                "skip_examples": dict(sorted(self.skip_examples.items())),
            },
            "metrics": {
                "miou": _rounded(s.miou),
                "pixel_accuracy": _rounded(s.pixel_accuracy),
                "scored_pixels": s.pixels,
                "ignore_id": self.ignore_id,
                "per_class": per_class,
                "confusion_matrix": self.confusion.matrix.tolist(),
                "confusion_matrix_layout": "rows: ground truth 0..K-1; columns: prediction "
                                           "0..K-1, then one column for predictions >= K",
            },
            "latency_ms": _ms(distribution(self.latency.numpy())),
            "inference_ms": _ms(distribution(self.inference.numpy())),
        }


def _rounded(value: float, digits: int = 6) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _ms(dist: dict) -> dict:
    return {k: (round(v * 1000, 3) if isinstance(v, float) else v) for k, v in dist.items()}
