"""Camera corruptions (textseg.replay.corruptions): deterministic, graded, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from textseg.replay.corruptions import FAMILIES, SEEDLESS, SEVERITIES, corrupt


@pytest.fixture(scope="module")
def frame(camvid_frames):
    (_, rgb), = camvid_frames(1)
    return rgb


def test_there_are_the_families_a_vehicle_camera_meets():
    assert {"gaussian_noise", "motion_blur", "defocus_blur", "fog", "low_light",
            "overexposure", "jpeg"} <= set(FAMILIES)
    assert {"rain", "lens_dirt"} & set(FAMILIES)
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_bytes_and_the_frame_is_left_alone(frame, family):
    before = frame.copy()
    first = corrupt(frame, family, 3, seed=11)
    assert first.dtype == np.uint8 and first.shape == frame.shape
    np.testing.assert_array_equal(first, corrupt(frame, family, 3, seed=11))
    np.testing.assert_array_equal(frame, before)
    other = corrupt(frame, family, 3, seed=12)
    assert np.array_equal(first, other) == (family in SEEDLESS)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_severity_degrades_the_frame_more_than_the_one_below(frame, family):
    """Mean absolute change from the clean frame, averaged over 3 seeds (where a seed places
    streaks or blobs), grows with the severity."""
    clean = frame.astype(np.float32)
    change = [np.mean([np.abs(corrupt(frame, family, s, seed).astype(np.float32) - clean).mean()
                       for seed in range(3)]) for s in SEVERITIES]
    assert change[0] > 0.5, change  # severity 1 is visible
    assert all(b > a for a, b in zip(change, change[1:], strict=False)), change


@pytest.mark.parametrize("size", [(120, 160), (720, 1280)])
@pytest.mark.parametrize("family", FAMILIES)
def test_any_frame_size(family, size):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*size, 3), np.uint8)
    assert corrupt(rgb, family, 5, seed=1).shape == rgb.shape


@pytest.mark.parametrize("args, message", [
    (("snow", 1), "unknown corruption 'snow': choose one of gaussian_noise, motion_blur"),
    (("fog", 0), "severity must be one of 1..5, got 0"),
    (("fog", 6), "severity must be one of 1..5, got 6"),
])
def test_bad_family_or_severity_is_refused_by_name(args, message):
    with pytest.raises(ValueError, match=message):
        corrupt(np.zeros((8, 8, 3), np.uint8), *args)


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                   np.zeros((8, 8, 3), np.float32)])
def test_a_frame_that_is_not_uint8_rgb_is_refused(image):
    with pytest.raises(ValueError, match="expected a uint8 H x W x 3 RGB frame"):
        corrupt(image, "jpeg", 1)


def test_the_report_gives_each_severity_and_its_share_of_clean():
    from textseg.replay.robustness import render_markdown

    data = {"model": "m.onnx", "images": "val", "command": "textseg robustness",
            "cpu": {"description": "CPU"},
            "conditions": [{"family": "clean", "severity": 0, "miou": 60.0, "frames_scored": 5},
                           {"family": "fog", "severity": 1, "miou": 54.0, "frames_scored": 5},
                           {"family": "fog", "severity": 5, "miou": 30.0, "frames_scored": 5}]}
    text = render_markdown(data)
    assert "Clean mIoU **60.00**" in text and "(5 frames)" in text
    assert "| fog | 54.00 | 30.00 | 42.00 |" in text
    assert "| fog | 90.0 | 50.0 | 70.0 |" in text


def test_spearman_and_the_health_validation_count_as_stated():
    from textseg.replay.robustness import health_validation, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # ties share a rank
    data = {"conditions": [
        {"family": "clean", "severity": 0, "windows": [[29, 0.9, 0, 60.0], [30, 0.8, 1, 61.0]]},
        {"family": "fog", "severity": 3, "windows": [[29, 0.5, 1, 40.0], [30, 0.85, 0, 45.0]]},
        {"family": "fog", "severity": 1, "windows": [[29, 0.7, 1, 45.0], [30, 0.9, 0, 61.0]]}]}
    result = health_validation(data)
    assert result["clean_false_alarm_share"] == 0.5
    assert result["fell_windows"] == 2 and result["warned_when_fell"] == 0.5  # severity >= 3
    assert result["rows"][2]["fell"] == 1 and result["rows"][2]["fell_warned"] == 1
    assert result["per_family"] == {"fog": {"fell": 2, "warned_when_fell": 0.5}}
    from textseg.replay.robustness import render_markdown

    conditions = [{**c, "miou": 50.0, "frames_scored": 31} for c in data["conditions"]]
    report = render_markdown({"conditions": conditions, "model": "m.onnx", "images": "val",
                              "command": "", "cpu": {"description": "a CPU"},
                              "health_validation": result})
    assert "per family: fog 50 % of 2." in report
