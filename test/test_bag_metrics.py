"""Replay evaluation metrics (numpy): confusion matrix, IoU, pixel accuracy, percentiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from textseg.replay.metrics import ConfusionMatrix, LabelValueError, distribution, scores


def _naive_iou(pred: np.ndarray, gt: np.ndarray, k: int, ignore: int) -> list[float]:
    """Per-class IoU the slow, obvious way (sets of pixels), for comparison."""
    keep = gt != ignore
    out = []
    for c in range(k):
        p, g = (pred == c) & keep, (gt == c) & keep
        union = np.count_nonzero(p | g)
        out.append(np.count_nonzero(p & g) / union if union else math.nan)
    return out


def test_confusion_matrix_matches_a_naive_count_with_ignore_and_unknown_predictions():
    rng = np.random.default_rng(0)
    k, ignore = 5, 255
    matrix = ConfusionMatrix(k, ignore)
    preds, gts = [], []
    for _ in range(4):
        gt = rng.integers(0, k, (37, 53)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.1] = ignore
        pred = rng.integers(0, k, gt.shape).astype(np.uint8)
        pred[rng.random(gt.shape) < 0.05] = 255  # "unlabelled" from the model: always wrong
        matrix.update(pred, gt)
        preds.append(pred)
        gts.append(gt)
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    s = matrix.summary()
    np.testing.assert_allclose(s.iou, _naive_iou(pred, gt, k, ignore))
    keep = gt != ignore
    assert s.pixels == np.count_nonzero(keep)
    assert s.pixel_accuracy == pytest.approx(np.count_nonzero((pred == gt) & keep) / s.pixels)
    assert s.miou == pytest.approx(np.nanmean(_naive_iou(pred, gt, k, ignore)))
    assert matrix.matrix[:, k].sum() == np.count_nonzero((pred == 255) & keep)


def test_absent_class_has_no_iou_and_is_left_out_of_the_mean():
    matrix = ConfusionMatrix(3, 11)
    gt = np.array([[0, 0, 1, 11]], np.uint8)
    pred = np.array([[0, 1, 1, 2]], np.uint8)  # class 2 only where ground truth is ignored
    matrix.update(pred, gt)
    s = matrix.summary()
    assert s.iou[0] == pytest.approx(0.5) and s.iou[1] == pytest.approx(0.5)
    assert math.isnan(s.iou[2])
    assert s.miou == pytest.approx(0.5)
    assert s.pixel_accuracy == pytest.approx(2 / 3)


def test_class_predicted_but_absent_from_ground_truth_scores_zero():
    matrix = ConfusionMatrix(3, 255)
    matrix.update(np.array([[2, 0]], np.uint8), np.array([[0, 0]], np.uint8))
    s = matrix.summary()
    assert s.iou[2] == 0.0 and s.iou[0] == pytest.approx(0.5)
    assert math.isnan(s.iou[1])


def test_update_returns_the_frames_own_matrix():
    matrix = ConfusionMatrix(2, 255)
    first = matrix.update(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)).copy()
    second = matrix.update(np.ones((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    assert first[0, 0] == 4 and second[0, 1] == 4 and matrix.matrix[0].tolist() == [4, 4, 0]


def test_ground_truth_outside_the_models_classes_is_refused_with_the_ids():
    matrix = ConfusionMatrix(11, 255)
    gt = np.full((4, 4), 3, np.uint8)
    gt[0, 0] = 14
    gt[1, 1] = 11
    with pytest.raises(LabelValueError, match=r"class ids 11, 14 .* 11 classes \(0\.\.10\)"):
        matrix.update(np.zeros_like(gt), gt)
    assert matrix.matrix.sum() == 0  # nothing half-counted


def test_ignore_id_inside_the_class_range_is_refused():
    with pytest.raises(ValueError, match="ignore id 5 is one of the model's 11 classes"):
        ConfusionMatrix(11, 5)
    with pytest.raises(ValueError, match="0..255"):
        ConfusionMatrix(11, 300)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        ConfusionMatrix(3, 255).update(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8))


def test_scores_of_an_empty_matrix_are_nan_not_errors():
    s = scores(np.zeros((4, 5), np.int64))
    assert math.isnan(s.miou) and math.isnan(s.pixel_accuracy) and s.pixels == 0


def test_distribution_percentiles():
    d = distribution(np.arange(1, 101, dtype=np.float64))
    assert d["count"] == 100 and d["min"] == 1 and d["max"] == 100
    assert d["p50"] == pytest.approx(50.5) and d["p90"] == pytest.approx(90.1)
    assert d["p99"] == pytest.approx(99.01) and d["mean"] == pytest.approx(50.5)
    assert distribution(np.zeros(0))["p50"] is None


def test_matches_the_training_packages_confusion_matrix_on_camvid_labels(camvid_dir):
    """The runtime's numpy metrics agree with the training package's (torch) on real CamVid
    labels against a shifted copy as prediction."""
    pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
    training = pytest.importorskip("textseg_training.evaluation",
                                   reason="training package not installed")
    import cv2

    ours = ConfusionMatrix(11, 11)
    theirs = training.ConfusionMatrix(11, 11)
    for path in sorted((camvid_dir / "valannot").glob("*.png"))[:3]:
        gt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        pred = np.roll(gt, 7, axis=1)
        pred[pred == 11] = 0  # the model never predicts void
        ours.update(pred, gt)
        theirs.update(pred, gt)
    np.testing.assert_array_equal(ours.matrix[:, :11], theirs.matrix)
    summary = ours.summary()
    np.testing.assert_allclose(summary.iou, theirs.iou())
    assert summary.miou == pytest.approx(theirs.miou())
    assert summary.pixel_accuracy == pytest.approx(theirs.pixel_accuracy())
