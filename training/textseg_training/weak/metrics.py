"""Scores of pseudo labels against the masks (used only to measure, never to train).

A pseudo label may be "uncertain" (no class): `PseudoLabelScore` keeps those pixels apart, so
that both the quality of what is labelled and how much is labelled are reported.
"""

from __future__ import annotations

import numpy as np


class PseudoLabelScore:
    """Confusion of K ground-truth classes against K predicted classes + "uncertain".

    Args:
        num_classes: K.
        ignore_index: ground-truth void (not scored).
        uncertain: the prediction value that means "no label" (any value outside 0..K-1 that
            is not a class is treated as uncertain too).
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ")
        k = self.num_classes
        keep = target != self.ignore_index
        t = target[keep].astype(np.int64)
        p = prediction[keep].astype(np.int64)
        p = np.where((p >= 0) & (p < k), p, k)
        if t.size and (t.min() < 0 or t.max() >= k):
            raise ValueError(f"target values outside 0..{k - 1} (void {self.ignore_index})")
        self.mat += np.bincount(t * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)

    def _iou(self, mat: np.ndarray) -> np.ndarray:
        k = self.num_classes
        tp = np.diag(mat[:, :k]).astype(np.float64)
        union = mat[:, :k].sum(0) + mat.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def iou(self) -> np.ndarray:
        """Per-class IoU with uncertain pixels counted as misses (the strict score)."""
        return self._iou(self.mat)

    def iou_covered(self) -> np.ndarray:
        """Per-class IoU on the labelled pixels only (how good what is labelled is)."""
        covered = self.mat.copy()
        covered[:, self.num_classes] = 0
        return self._iou(covered)

    def coverage(self) -> float:
        """Fraction of scored (non-void) pixels that got a class."""
        total = self.mat.sum()
        return float(self.mat[:, : self.num_classes].sum() / total) if total else float("nan")

    def summary(self, class_names) -> dict[str, object]:
        def pct(values: np.ndarray) -> float:
            return round(100.0 * float(np.nanmean(values)), 2)

        return {"miou": pct(self.iou()), "miou_covered": pct(self.iou_covered()),
                "coverage": round(100.0 * self.coverage(), 2),
                "per_class_iou": {name: (None if np.isnan(v) else round(100.0 * float(v), 2))
                                  for name, v in zip(class_names, self.iou(), strict=True)}}
