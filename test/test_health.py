"""The labels' run-time health (textseg.health): frame summaries, the model's reference, the
rolling window's score and level, black and frozen streams."""

from __future__ import annotations

import numpy as np
import pytest

from textseg.health import (
    CONFIDENCE_BINS,
    ERROR,
    OK,
    WARN,
    HealthMonitor,
    HealthReference,
    HealthReferenceError,
    HealthThresholds,
    HealthWeights,
    frame_stats,
    read_health_reference,
)

K = 11


def _frame(seed: int, confidence: int = 220, classes=(0, 2, 3), brightness=(30, 220)):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(*brightness, (96, 128, 3), np.uint8)
    labels = rng.choice(np.array(classes, np.uint8), (96, 128))
    conf = np.clip(rng.normal(confidence, 12, (96, 128)), 0, 255).astype(np.uint8)
    return rgb, labels, conf


def _stats(seed: int, **kwargs):
    return frame_stats(*_frame(seed, **kwargs), K)


@pytest.fixture(scope="module")
def reference():
    return HealthReference.from_frames([_stats(s) for s in range(20)], "synthetic")


def test_a_frame_summary_is_normalised():
    stats = _stats(0)
    assert stats.confidence_hist.shape == (CONFIDENCE_BINS,)
    assert stats.confidence_hist.sum() == pytest.approx(1.0)
    assert stats.class_share.shape == (K,) and stats.class_share.sum() == pytest.approx(1.0)
    assert set(np.flatnonzero(stats.class_share)) == {0, 2, 3}
    assert 0.8 < stats.mean_confidence < 0.9 and 100 < stats.brightness < 150
    assert stats.sharpness > 0


def test_the_reference_travels_in_the_metadata(reference):
    text = reference.to_metadata()
    back = read_health_reference({"health_reference": text}, K)
    assert back.frames == 20 and back.source == "synthetic"
    np.testing.assert_allclose(back.class_share, reference.class_share, atol=1e-6)
    assert read_health_reference({}, K) is None
    with pytest.raises(HealthReferenceError, match="shares of 11 classes, the model 19"):
        read_health_reference({"health_reference": text}, 19)
    with pytest.raises(HealthReferenceError, match="cannot be read"):
        read_health_reference({"health_reference": "{"}, K)


def test_a_reference_without_the_clipped_share_skips_that_term(reference):
    import json

    data = json.loads(reference.to_metadata())
    assert data["saturated"] == pytest.approx(reference.saturated, abs=1e-6)
    del data["saturated"]  # a reference written before the clipped share was recorded
    old = read_health_reference({"health_reference": json.dumps(data)}, K)
    assert old.saturated is None
    glare = [frame_stats(*_frame(s, brightness=(200, 256)), K) for s in range(5)]
    for ref, lower in ((old, False), (reference, True)):
        monitor = HealthMonitor(ref, HealthThresholds(window=5),
                                HealthWeights(brightness=0.0, saturation=1.0))
        for stats in glare:
            monitor.add(stats)
        plain = HealthMonitor(ref, HealthThresholds(window=5),
                              HealthWeights(brightness=0.0, saturation=0.0))
        for stats in glare:
            plain.add(stats)
        assert (monitor.score() < plain.score()) is lower


def test_frames_like_the_reference_are_ok(reference):
    monitor = HealthMonitor(reference, HealthThresholds(window=10))
    for seed in range(100, 110):
        monitor.add(_stats(seed))
    assessment = monitor.assess()
    assert assessment.level == OK, assessment
    assert assessment.score > 0.95


def test_unsure_labels_of_other_classes_warn_then_err(reference):
    unsure = HealthMonitor(reference, HealthThresholds(window=10))
    for seed in range(10):
        unsure.add(_stats(seed, confidence=200))  # the model is less sure than on its frames
    assert unsure.assess().level == WARN, unsure.assess()
    lost = HealthMonitor(reference, HealthThresholds(window=10))
    for seed in range(10):
        lost.add(_stats(seed, confidence=90, classes=(7, 8)))
    assessment = lost.assess()
    assert assessment.level == ERROR and "labels unreliable" in assessment.message
    assert assessment.score < unsure.score()
    # every pixel uncertain: the terms' sum goes far below 0, the score stays in 0..1
    assert assessment.score == 0.0


def test_a_patch_the_model_cannot_read_warns_through_the_uncertain_share(reference):
    """Dirt on the lens: the class mix and most of the confidence stay as they were, but the
    pixels under the patch have no class at half probability. Only the uncertain term sees
    it: without it (weight 0) the same window is OK."""
    frames = []
    for seed in range(10):
        rgb, labels, conf = _frame(seed)
        conf[:, :8] = 90  # 1/16 of the frame: confidence 0.35
        frames.append(frame_stats(rgb, labels, conf, K))
    levels = {}
    for weight in (0.0, HealthWeights().uncertain):
        monitor = HealthMonitor(reference, HealthThresholds(window=10),
                                HealthWeights(uncertain=weight))
        for stats in frames:
            monitor.add(stats)
        levels[weight] = monitor.assess()
    assert levels[0.0].level == OK, levels[0.0]
    dirty = levels[HealthWeights().uncertain]
    assert dirty.level == WARN, dirty
    # 1/16 of the pixels newly uncertain costs the weight times that share
    assert dirty.score == pytest.approx(1 - HealthWeights().uncertain / 16, abs=0.01)


def test_a_blurred_stream_loses_its_score(reference):
    import cv2

    monitor = HealthMonitor(reference, HealthThresholds(window=5))
    for seed in range(5):
        rgb, labels, conf = _frame(seed)
        monitor.add(frame_stats(cv2.GaussianBlur(rgb, (0, 0), 3.0), labels, conf, K))
    assert monitor.assess().level >= WARN


def test_black_and_frozen_streams_are_errors_without_a_reference():
    monitor = HealthMonitor(None, HealthThresholds(frozen_frames=3))
    monitor.add(_stats(0))
    assert monitor.assess().level == OK and monitor.assess().score is None
    black = _frame(1, brightness=(0, 6))
    monitor.add(frame_stats(*black, K))
    assert monitor.assess().level == ERROR and "black image" in monitor.assess().message
    still = _frame(2)
    for _ in range(3):
        monitor.add(frame_stats(*still, K))
    assessment = monitor.assess()
    assert assessment.level == ERROR and "frozen image: 3 identical frames" in assessment.message
    monitor.add(_stats(3))  # the camera moves again
    assert monitor.assess().level == OK


def test_a_new_window_forgets_the_frames_and_the_frozen_count_before_a_gap(reference):
    monitor = HealthMonitor(reference, HealthThresholds(window=5, frozen_frames=3))
    still = frame_stats(*_frame(2), K)
    for _ in range(2):
        monitor.add(still)
    monitor.reset()
    monitor.add(still)  # the same picture after the gap: one frame, not a third in a row
    assessment = monitor.assess()
    assert assessment.level == OK
    assert assessment.values["identical frames in a row"] == "1"
    assert assessment.values["health window (frames)"] == "1"


def test_the_values_have_the_same_keys_with_or_without_a_reference(reference):
    keys = []
    for ref in (reference, None):
        monitor = HealthMonitor(ref)
        monitor.add(_stats(0))
        keys.append(list(monitor.assess().values))
    assert keys[0] == keys[1] and "reference mean confidence" in keys[1]


def test_sharpness_does_not_depend_on_the_resolution():
    import cv2

    rgb, labels, conf = _frame(0)
    large = cv2.resize(rgb, (512, 384), interpolation=cv2.INTER_NEAREST)
    big_labels = cv2.resize(labels, (512, 384), interpolation=cv2.INTER_NEAREST)
    big_conf = cv2.resize(conf, (512, 384), interpolation=cv2.INTER_NEAREST)
    small, big = frame_stats(rgb, labels, conf, K), frame_stats(large, big_labels, big_conf, K)
    assert big.sharpness == pytest.approx(small.sharpness, rel=0.15)


def test_labels_outside_the_classes_leave_the_shares_whole():
    rgb, labels, conf = _frame(0)
    labels[:48] = 255  # class_others: drop, or a model's void
    assert frame_stats(rgb, labels, conf, K).class_share.sum() == pytest.approx(1.0)


def test_a_model_without_confidence_is_judged_by_its_class_mix_and_its_frames(reference):
    rgb, labels, _ = _frame(0)
    stats = frame_stats(rgb, labels, None, K)
    assert stats.mean_confidence is None
    monitor = HealthMonitor(reference, HealthThresholds(window=1))
    monitor.add(stats)
    assessment = monitor.assess()
    assert assessment.level == OK and assessment.values["mean confidence"] == "-"
    with pytest.raises(ValueError, match="needs the model's confidence output"):
        HealthReference.from_frames([stats])
