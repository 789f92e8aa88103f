"""What the node does with one frame, without ROS: decode, (optionally) downscale, infer,
and build only the outputs somebody wants. Unit-tested without rclpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from textseg.class_mapping import ClassMapping
from textseg.engine.backend import SegmentationBackend
from textseg.health import FrameStats, frame_stats
from textseg.imaging import (
    DEFAULT_MAX_PIXELS,
    colorize,
    compressed_to_rgb,
    image_to_rgb,
    overlay,
    palette_lut,
    scaled_size,
)


@dataclass(frozen=True)
class OutputRequest:
    """Which outputs to compute for this frame (the node asks: enabled and subscribed)."""

    labels: bool = True
    color: bool = False
    overlay: bool = False
    confidence: bool = False
    points: bool = False  # labels/points: the labels, and the confidence where there is one
    health: bool = False  # the frame's health summary (textseg.health), with whatever is made

    def any(self) -> bool:
        return self.labels or self.color or self.overlay or self.confidence or self.points

    @property
    def scores(self) -> bool:
        """Whether the confidence is computed (its topic, the point cloud's field, health)."""
        return self.confidence or self.points or self.health


@dataclass(frozen=True)
class FrameResult:
    labels: np.ndarray  # uint8 [h, w] at the output size
    color: np.ndarray | None  # uint8 RGB [h, w, 3]
    overlay: np.ndarray | None  # uint8 RGB [h, w, 3]
    confidence: np.ndarray | None  # uint8 [h, w]
    inference_s: float
    health: FrameStats | None = None  # of the model's own labels, before class_groups


class SegmentationPipeline:
    def __init__(self, backend: SegmentationBackend, palette, output_scale: float = 1.0,
                 overlay_alpha: float = 0.5, max_pixels: int = DEFAULT_MAX_PIXELS,
                 class_mapping: ClassMapping | None = None) -> None:
        """`palette` is the outputs' (after `class_mapping`, which turns the model's labels
        and confidence into the outputs' classes; None: the model's own)."""
        if not 0.0 < output_scale <= 1.0:
            raise ValueError(f"output_scale must be in (0, 1], got {output_scale}")
        if not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha}")
        self.backend = backend
        self.output_scale = output_scale
        self.overlay_alpha = overlay_alpha
        self.max_pixels = max_pixels
        self._lut = palette_lut(palette)
        self._mapping = None if class_mapping is None or class_mapping.identity \
            else class_mapping

    def decode_raw(self, encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
        return image_to_rgb(encoding, height, width, step, data, self.max_pixels)

    def decode_compressed(self, data, format_field: str = "") -> np.ndarray:
        return compressed_to_rgb(data, self.max_pixels, format_field)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return scaled_size(height, width, self.output_scale)

    def _scaled(self, rgb: np.ndarray) -> np.ndarray:
        height, width = self.output_size(*rgb.shape[:2])
        if (height, width) != rgb.shape[:2]:
            # Smaller in, smaller out: the graph resizes to the network size anyway, and the
            # final upsampling and argmax then run at the output size.
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return rgb

    def _views(self, rgb: np.ndarray, result, request: OutputRequest,
               inference_s: float) -> FrameResult:
        color = mixed = health = None
        labels, confidence = result.labels, result.confidence if request.scores else None
        if request.health:
            health = frame_stats(rgb, labels, confidence, self.backend.info.num_classes)
        if self._mapping is not None:
            labels, confidence = self._mapping.apply(labels, confidence)
        if request.color or request.overlay:
            color = colorize(labels, self._lut)
        if request.overlay:
            mixed = overlay(rgb, color, self.overlay_alpha)
        return FrameResult(labels=labels, color=color if request.color else None,
                           overlay=mixed, confidence=confidence, inference_s=inference_s,
                           health=health)

    def run(self, rgb: np.ndarray, request: OutputRequest) -> FrameResult:
        rgb = self._scaled(rgb)
        started = time.perf_counter()
        result = self.backend.infer(rgb, want_confidence=request.scores)
        return self._views(rgb, result, request, time.perf_counter() - started)

    def run_batch(self, frames: list[np.ndarray], requests: list[OutputRequest]
                  ) -> list[FrameResult]:
        """Frames of one size (several cameras) as one inference; each FrameResult carries
        its share of the inference time."""
        if len(frames) != len(requests):
            raise ValueError(f"{len(frames)} frames but {len(requests)} output requests")
        scaled = [self._scaled(rgb) for rgb in frames]
        started = time.perf_counter()
        results = self.backend.infer_batch(
            scaled, want_confidence=any(r.scores for r in requests))
        share = (time.perf_counter() - started) / len(frames)
        return [self._views(rgb, result, request, share)
                for rgb, result, request in zip(scaled, results, requests, strict=True)]


def fold_binning_roi(k, p, binning_x: int, binning_y: int, x_offset: int, y_offset: int
                     ) -> tuple[list[float], list[float]]:
    """K and P of the full-resolution sensor -> of the image a camera actually published with
    that binning and region of interest (CameraInfo's convention, as image_geometry reads it):
    the principal point moves by the ROI offset, then focal lengths, principal point and Tx
    divide by the binning (0 means 1)."""
    k, p = [float(v) for v in k], [float(v) for v in p]
    if len(k) != 9 or len(p) != 12:
        raise ValueError("K must have 9 and P 12 elements")
    bx, by = max(1, int(binning_x)), max(1, int(binning_y))
    k[2] -= x_offset
    k[5] -= y_offset
    p[2] -= x_offset
    p[6] -= y_offset
    return scale_intrinsics(k, p, 1.0 / bx, 1.0 / by)


def camera_image_size(info) -> tuple[int, int] | None:
    """(height, width) of the image a CameraInfo describes: its ROI (the whole sensor when the
    ROI is empty) divided by the binning (integer division, as image_geometry reads it); None
    when it gives no size (width or height 0). `info` is a sensor_msgs/CameraInfo or anything
    with its fields."""
    roi = info.roi
    width, height = (roi.width or info.width), (roi.height or info.height)
    if not width or not height:
        return None
    return height // max(1, int(info.binning_y)), width // max(1, int(info.binning_x))


def labels_intrinsics(info, input_size: tuple[int, int], output_size: tuple[int, int]
                      ) -> tuple[list[float], list[float]]:
    """K and P of a camera's CameraInfo for the labels of its frames: binning and ROI folded
    (the frames are the whole binned ROI image), then scaled from the image the camera_info
    describes (the frame's `input_size` when it gives no size) to `output_size` (height,
    width) as image_proc's resize does. The one definition behind labels/camera_info and
    labels/points."""
    k, p = fold_binning_roi(info.k, info.p, info.binning_x, info.binning_y,
                            info.roi.x_offset, info.roi.y_offset)
    in_h, in_w = camera_image_size(info) or input_size
    out_h, out_w = output_size
    return scale_intrinsics(k, p, out_w / in_w, out_h / in_h)


def scale_intrinsics(k, p, scale_x: float, scale_y: float) -> tuple[list[float], list[float]]:
    """K (3x3) and P (3x4), row-major, for an image resized by (scale_x, scale_y): focal
    lengths, principal point and P's Tx scale with the image (as image_proc's resize does)."""
    k, p = [float(v) for v in k], [float(v) for v in p]
    if len(k) != 9 or len(p) != 12:
        raise ValueError("K must have 9 and P 12 elements")
    for index in (0, 2):
        k[index] *= scale_x
    for index in (4, 5):
        k[index] *= scale_y
    for index in (0, 2, 3):
        p[index] *= scale_x
    for index in (5, 6):
        p[index] *= scale_y
    return k, p
