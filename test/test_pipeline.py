"""SegmentationPipeline (what the node does per frame, without ROS) on the real ONNX Runtime
backend and real CamVid frames."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from textseg.engine import BackendOptions, load_backend
from textseg.imaging import ImageRejected, colorize, encode_rgb
from textseg.pipeline import (
    OutputRequest,
    SegmentationPipeline,
    camera_image_size,
    fold_binning_roi,
    labels_intrinsics,
    scale_intrinsics,
)


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    return load_backend(tiny_model_path, BackendOptions(backend="onnxruntime", threads=1))


@pytest.fixture(scope="module")
def frame(camvid_frames):
    (_, rgb), = camvid_frames(1)
    return rgb


def test_labels_only_by_default(backend, frame):
    pipeline = SegmentationPipeline(backend, backend.info.palette)
    result = pipeline.run(frame, OutputRequest())
    np.testing.assert_array_equal(result.labels, backend.infer(frame).labels)
    assert result.color is None and result.overlay is None and result.confidence is None
    assert result.inference_s > 0


def test_every_output(backend, frame):
    pipeline = SegmentationPipeline(backend, backend.info.palette, overlay_alpha=0.25)
    request = OutputRequest(labels=True, color=True, overlay=True, confidence=True)
    result = pipeline.run(frame, request)
    palette = np.array(backend.info.palette, np.uint8)
    np.testing.assert_array_equal(result.color, palette[result.labels])
    expected = 0.25 * result.color.astype(float) + 0.75 * frame.astype(float)
    assert np.abs(result.overlay.astype(float) - expected).max() <= 1
    assert result.confidence.shape == frame.shape[:2]
    assert result.confidence.dtype == np.uint8


def test_overlay_without_color_topic(backend, frame):
    pipeline = SegmentationPipeline(backend, backend.info.palette)
    result = pipeline.run(frame, OutputRequest(overlay=True))
    assert result.color is None and result.overlay.shape == frame.shape


def test_output_scale_shrinks_every_output(backend, frame):
    pipeline = SegmentationPipeline(backend, backend.info.palette, output_scale=0.5)
    assert pipeline.output_size(360, 480) == (180, 240)
    result = pipeline.run(frame, OutputRequest(color=True, overlay=True, confidence=True))
    assert result.labels.shape == (180, 240)
    assert result.color.shape == result.overlay.shape == (180, 240, 3)
    assert result.confidence.shape == (180, 240)
    small = cv2.resize(frame, (240, 180), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(result.labels, backend.infer(small).labels)


@pytest.mark.parametrize("kwargs, message", [
    ({"output_scale": 0.0}, "output_scale"), ({"output_scale": 1.5}, "output_scale"),
    ({"overlay_alpha": -0.1}, "overlay_alpha"), ({"overlay_alpha": 2.0}, "overlay_alpha"),
])
def test_bad_options(backend, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmentationPipeline(backend, backend.info.palette, **kwargs)


def test_decoders(backend, frame):
    pipeline = SegmentationPipeline(backend, backend.info.palette, max_pixels=1000)
    step, data = encode_rgb(frame, "bgr8")
    with pytest.raises(ImageRejected, match="exceeds the limit of 1000 pixels"):
        pipeline.decode_raw("bgr8", 360, 480, step, data)
    _, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with pytest.raises(ImageRejected, match="exceeds the limit"):
        pipeline.decode_compressed(png.tobytes())
    roomy = SegmentationPipeline(backend, backend.info.palette)
    np.testing.assert_array_equal(roomy.decode_raw("bgr8", 360, 480, step, data), frame)
    np.testing.assert_array_equal(roomy.decode_compressed(png.tobytes()), frame)


def test_colorize_matches_numpy_lookup():
    palette = np.random.default_rng(3).integers(0, 256, (19, 3), np.uint8)
    labels = np.random.default_rng(4).integers(0, 256, (37, 53), np.uint8)
    lut = np.zeros((256, 3), np.uint8)
    lut[:19] = palette
    np.testing.assert_array_equal(colorize(labels, palette), lut[labels])


def test_scale_intrinsics_like_image_proc_resize():
    k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    k2, p2 = scale_intrinsics(k, p, 0.5, 0.25)
    assert k2 == [250.0, 0.0, 160.0, 0.0, 127.5, 60.0, 0.0, 0.0, 1.0]
    assert p2 == [250.0, 0.0, 160.0, -12.5, 0.0, 127.5, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        scale_intrinsics(k[:4], p, 1, 1)


def test_binning_and_roi_fold_into_k_and_p_so_projections_land_on_the_image():
    """A 3-D point projects with the folded K onto the same place of the binned ROI image as
    the full sensor's projection, shifted by the ROI and divided by the binning."""
    k = [1000.0, 0.0, 1020.0, 0.0, 1010.0, 770.0, 0.0, 0.0, 1.0]
    p = [1000.0, 0.0, 1020.0, -50.0, 0.0, 1010.0, 770.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    k2, p2 = fold_binning_roi(k, p, 2, 2, 200, 100)
    point = np.array([0.3, -0.2, 4.0])
    sensor = np.array(k).reshape(3, 3) @ point
    folded = np.array(k2).reshape(3, 3) @ point
    su, sv = sensor[:2] / sensor[2]
    fu, fv = folded[:2] / folded[2]
    assert (fu, fv) == pytest.approx(((su - 200) / 2, (sv - 100) / 2))
    assert p2[3] == -25.0 and p2[2] == (1020.0 - 200) / 2 and p2[6] == (770.0 - 100) / 2
    assert fold_binning_roi(k, p, 0, 0, 0, 0) == (k, p)  # binning 0 = 1, no ROI: unchanged


def _camera_info(width, height, binning=0, roi=(0, 0, 0, 0)):
    k = [800.0, 0.0, 479.5, 0.0, 820.0, 359.5, 0.0, 0.0, 1.0]
    p = [800.0, 0.0, 479.5, -40.0, 0.0, 820.0, 359.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    x_offset, y_offset, roi_width, roi_height = roi
    return SimpleNamespace(k=k, p=p, width=width, height=height, binning_x=binning,
                           binning_y=binning, roi=SimpleNamespace(
                               x_offset=x_offset, y_offset=y_offset, width=roi_width,
                               height=roi_height))


def test_labels_intrinsics_fold_binning_then_scale_to_the_labels():
    """960x720 binned by 2 is the 480x360 frame; its labels at 240x180 see the sensor's K
    divided by 4 (fx) and principal point moved likewise; a ROI moves it first."""
    binned = _camera_info(960, 720, binning=2)
    assert camera_image_size(binned) == (360, 480)
    k, p = labels_intrinsics(binned, (360, 480), (180, 240))
    assert k == [200.0, 0.0, 479.5 / 4, 0.0, 205.0, 359.5 / 4, 0.0, 0.0, 1.0]
    assert p[3] == -10.0
    # the same camera unbinned at 480x360: the same labels' K
    plain = _camera_info(480, 360)
    plain.k = [400.0, 0.0, 479.5 / 2, 0.0, 410.0, 359.5 / 2, 0.0, 0.0, 1.0]
    assert labels_intrinsics(plain, (360, 480), (180, 240))[0] == k
    roi = _camera_info(1600, 1200, binning=2, roi=(160, 120, 960, 720))
    assert camera_image_size(roi) == (360, 480)
    assert labels_intrinsics(roi, (360, 480), (360, 480))[0][2] == (479.5 - 160) / 2
    # no size given: the frame's; a size that is not the frame's: scaled from it
    assert camera_image_size(_camera_info(0, 0)) is None
    assert labels_intrinsics(_camera_info(0, 0), (720, 960), (360, 480))[0][0] == 400.0
    assert labels_intrinsics(_camera_info(960, 720), (360, 480), (360, 480))[0][0] == 400.0


def test_a_batch_of_cameras_gives_each_frame_its_own_outputs(backend, camvid_frames):
    frames = [rgb for _, rgb in camvid_frames(2)]
    pipeline = SegmentationPipeline(backend, backend.info.palette, output_scale=0.5)
    requests = [OutputRequest(color=True), OutputRequest(confidence=True)]
    together = pipeline.run_batch(frames, requests)
    for rgb, request, result in zip(frames, requests, together, strict=True):
        alone = pipeline.run(rgb, request)
        np.testing.assert_array_equal(result.labels, alone.labels)
        assert result.labels.shape == (rgb.shape[0] // 2, rgb.shape[1] // 2)
        assert (result.color is None) == (not request.color)
        assert (result.confidence is None) == (not request.confidence)
        if request.confidence:
            np.testing.assert_array_equal(result.confidence, alone.confidence)
        assert result.inference_s > 0
    with pytest.raises(ValueError, match="2 frames but 1"):
        pipeline.run_batch(frames, requests[:1])


def test_a_class_mapping_reaches_labels_colour_and_confidence(backend, frame):
    from textseg.class_mapping import build_class_mapping

    info = backend.info
    model = backend.infer(frame, want_confidence=True)
    seen = [info.class_names[i] for i in np.unique(model.labels)]
    assert len(seen) >= 3, seen  # merged, renamed and dropped classes all on the frame
    mapping = build_class_mapping(info.class_names, info.palette,
                                  [f"merged: {seen[0]}, {seen[1]}", f"renamed: {seen[2]}"],
                                  "drop", ["merged: 1, 2, 3"])
    pipeline = SegmentationPipeline(backend, mapping.palette, class_mapping=mapping)
    request = OutputRequest(labels=True, color=True, confidence=True)
    result = pipeline.run(frame, request)
    np.testing.assert_array_equal(result.labels, mapping.label_lut[model.labels])
    assert set(np.unique(result.labels)) == ({0, 1, 255} if len(seen) > 3 else {0, 1})
    kept = result.labels != 255
    np.testing.assert_array_equal(result.confidence[kept], model.confidence[kept])
    assert (result.confidence[~kept] == 0).all()
    assert (result.color[result.labels == 0] == (1, 2, 3)).all()
    assert (result.color[~kept] == 0).all()  # no class, no colour
