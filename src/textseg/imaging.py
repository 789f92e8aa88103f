"""ROS-free image conversion between message fields and numpy arrays.

The node is a thin shell over these functions; they are unit-tested without rclpy. All work is
whole-array numpy/OpenCV: no per-pixel Python.
"""

from __future__ import annotations

import cv2
import numpy as np

# encoding -> (channels, OpenCV conversion to RGB or None when already RGB)
SUPPORTED_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
# 8K x 8K: far above any camera, small enough that a corrupt header cannot exhaust memory.
DEFAULT_MAX_PIXELS = 8192 * 8192


class ImageRejected(ValueError):
    """A message that cannot be turned into an image; `reason` is a short stable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_to_rgb(encoding: str, height: int, width: int, step: int, data,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Turn sensor_msgs/Image fields into a uint8 RGB array [H, W, 3].

    rgb8 frames without row padding come back as a zero-copy view of `data`.
    """
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageRejected(
            "encoding", f"unsupported encoding '{encoding}' "
            f"(supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels, conversion = SUPPORTED_ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageRejected("size", f"zero-size image {width}x{height}")
    if height * width > max_pixels:
        raise ImageRejected(
            "size", f"image {width}x{height} exceeds the limit of {max_pixels} pixels")
    if step < width * channels:
        raise ImageRejected(
            "step", f"step {step} is smaller than width*channels = {width * channels} "
            f"for {encoding}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size != height * step:
        raise ImageRejected(
            "data_size", f"data has {buffer.size} bytes, expected height*step = "
            f"{height * step}")
    rows = buffer.reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if conversion is None:
        return pixels
    return cv2.cvtColor(pixels, conversion)


_FROM_RGB = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
             "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY}


def encode_rgb(rgb: np.ndarray, encoding: str) -> tuple[int, bytes]:
    """RGB array -> (step, data) of a sensor_msgs/Image in `encoding` (no row padding)."""
    if encoding not in _FROM_RGB:
        raise ValueError(f"cannot encode to '{encoding}' (supported: {', '.join(_FROM_RGB)})")
    conversion = _FROM_RGB[encoding]
    pixels = rgb if conversion is None else cv2.cvtColor(rgb, conversion)
    return pixels.shape[1] * SUPPORTED_ENCODINGS[encoding][0], pixels.tobytes()


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class-id image [H, W] -> RGB colour mask via a 256-entry lookup table."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = palette
    return lut[labels]


def overlay(rgb: np.ndarray, color_mask: np.ndarray, alpha: float) -> np.ndarray:
    """Blend a colour mask over the image (alpha = weight of the mask)."""
    return cv2.addWeighted(color_mask, alpha, rgb, 1.0 - alpha, 0.0)
