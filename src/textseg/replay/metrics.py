"""Segmentation and timing metrics in numpy: confusion matrix, IoU, pixel accuracy, percentiles.

Confusion matrix convention: rows are ground-truth classes 0..K-1, columns predictions 0..K-1
plus one extra column K for predictions outside the model's classes (e.g. 255, "unlabelled"),
which count as wrong for every class. Ground-truth pixels equal to the ignore id are left out.
The IoU of a class that appears neither in the ground truth nor in the predictions is NaN and
left out of the mean (the usual convention, also the training package's).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np


class LabelValueError(ValueError):
    """Ground truth holds a class id the model does not know (and that is not the ignore id)."""


class ConfusionMatrix:
    """Accumulates a [K, K+1] int64 confusion matrix over frames, one np.bincount per frame."""

    def __init__(self, num_classes: int, ignore_id: int) -> None:
        if not 1 <= num_classes <= 255:
            raise ValueError(f"num_classes must be 1..255, got {num_classes}")
        if not 0 <= ignore_id <= 255:
            raise ValueError(f"the ignore id must be 0..255 (a mono8 value), got {ignore_id}")
        if ignore_id < num_classes:
            raise ValueError(f"the ignore id {ignore_id} is one of the model's {num_classes} "
                             f"classes (0..{num_classes - 1}); pass the id your labels use for "
                             "'unlabelled' (--ignore-id)")
        self.num_classes = num_classes
        self.ignore_id = ignore_id
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
        """Add one frame (uint8 [H, W] each); returns that frame's own [K, K+1] matrix.

        Raises LabelValueError when the ground truth holds ids >= K other than the ignore id.
        """
        if prediction.shape != ground_truth.shape:
            raise ValueError(f"prediction {prediction.shape} and ground truth "
                             f"{ground_truth.shape} differ in size")
        k = self.num_classes
        pred = np.minimum(prediction.astype(np.uint16, copy=False), k)  # >= K -> column K
        index = ground_truth.astype(np.uint16) * (k + 1) + pred
        counts = np.bincount(index.ravel(), minlength=256 * (k + 1)).reshape(256, k + 1)
        outside = counts[k:].sum(axis=1)
        outside[self.ignore_id - k] = 0
        if outside.any():
            bad = np.flatnonzero(outside) + k
            raise LabelValueError(
                f"ground truth holds class ids {', '.join(map(str, bad[:8]))} but the model "
                f"has {k} classes (0..{k - 1}) and the ignore id is {self.ignore_id}: the "
                "labels were made for another class set (use a model with matching classes, "
                "or pass the right --ignore-id)")
        frame = counts[:k]
        self.matrix += frame
        return frame

    def summary(self) -> Scores:
        return scores(self.matrix)


@dataclass(frozen=True)
class Scores:
    iou: np.ndarray  # [K] float, NaN where the class is absent from ground truth and predictions
    miou: float  # NaN when no class has a defined IoU
    pixel_accuracy: float  # NaN when no pixel was scored
    pixels: int  # scored pixels (ground truth not ignored)
    gt_pixels: np.ndarray  # [K] ground-truth pixels per class


def scores(matrix: np.ndarray) -> Scores:
    """IoU per class, mIoU and pixel accuracy of a [K, K+1] (or [K, K]) confusion matrix."""
    matrix = np.asarray(matrix, np.int64)
    k = matrix.shape[0]
    true_positive = np.diag(matrix[:, :k]).astype(np.float64)
    gt_pixels = matrix.sum(axis=1)
    predicted = matrix[:, :k].sum(axis=0)
    union = gt_pixels + predicted - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)
    total = int(gt_pixels.sum())
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    accuracy = float(true_positive.sum() / total) if total else float("nan")
    return Scores(iou=iou, miou=miou, pixel_accuracy=accuracy, pixels=total,
                  gt_pixels=gt_pixels)


class Samples:
    """A growing float64 series (latencies, inference times) at 8 bytes per value, so a bag of
    any length costs little memory."""

    def __init__(self) -> None:
        self._values = array("d")

    def add(self, value: float) -> None:
        self._values.append(float(value))

    def __len__(self) -> int:
        return len(self._values)

    def numpy(self) -> np.ndarray:
        return np.frombuffer(self._values, np.float64) if self._values else np.zeros(0)


PERCENTILES = (50, 90, 99)


def distribution(values: np.ndarray) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99, min, max of a series (None for an empty one)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None,
                "min": None, "max": None}
    result: dict[str, float | int | None] = {"count": int(values.size),
                                             "mean": float(values.mean())}
    for p in PERCENTILES:
        result[f"p{p}"] = float(np.percentile(values, p))
    result["min"] = float(values.min())
    result["max"] = float(values.max())
    return result
