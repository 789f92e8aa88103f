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


def check_image_header(encoding: str, height: int, width: int, step: int, nbytes: int,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Every check on a sensor_msgs/Image that needs no pixel: O(1), so the node runs it on
    the executor thread and a malformed message never displaces a good pending frame."""
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageRejected(
            "encoding", f"unsupported encoding '{encoding}' "
            f"(supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels = SUPPORTED_ENCODINGS[encoding][0]
    if height <= 0 or width <= 0:
        raise ImageRejected("size", f"zero-size image {width}x{height}")
    if height * width > max_pixels:
        raise ImageRejected(
            "size", f"image {width}x{height} exceeds the limit of {max_pixels} pixels")
    if step < width * channels:
        raise ImageRejected(
            "step", f"step {step} is smaller than width*channels = {width * channels} "
            f"for {encoding}")
    if nbytes != height * step:
        raise ImageRejected(
            "data_size", f"data has {nbytes} bytes, expected height*step = "
            f"{height * step}")


def image_to_rgb(encoding: str, height: int, width: int, step: int, data,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Turn sensor_msgs/Image fields into a uint8 RGB array [H, W, 3].

    rgb8 frames without row padding come back as a zero-copy view of `data`.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    check_image_header(encoding, height, width, step, buffer.size, max_pixels)
    channels, conversion = SUPPORTED_ENCODINGS[encoding]
    rows = buffer.reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if conversion is None:
        return pixels
    return cv2.cvtColor(pixels, conversion)


# --- sensor_msgs/CompressedImage ----------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# JPEG start-of-frame markers carrying the image size (not DHT C4, JPG C8, DAC CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_header(data, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) of JPEG/PNG bytes, read from the headers only.

    Rejects unknown formats, truncated files and sizes over `max_pixels` before anything is
    decoded (a 100-byte PNG can claim 60000x60000 pixels)."""
    head = bytes(memoryview(data)[:64]) if len(data) else b""
    if len(data) == 0:
        raise ImageRejected("size", "compressed image has no data")
    if head.startswith(_PNG_SIGNATURE):
        if len(data) < 33 or head[12:16] != b"IHDR":
            raise ImageRejected("corrupt", "PNG data without an IHDR header")
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if bytes(memoryview(data)[-12:]) != _PNG_END:
            raise ImageRejected("truncated", "PNG data is truncated (no IEND chunk at the end)")
        kind = "png"
    elif head.startswith(b"\xff\xd8"):
        width, height = _jpeg_size(memoryview(data))
        tail = bytes(memoryview(data)[-2:])
        if tail != b"\xff\xd9":
            raise ImageRejected("truncated", "JPEG data is truncated (no end-of-image marker)")
        kind = "jpeg"
    else:
        raise ImageRejected(
            "format", f"unsupported compressed format (data starts with {head[:8].hex()}; "
            "supported: jpeg, png)")
    if height <= 0 or width <= 0:
        raise ImageRejected("size", f"zero-size {kind} image {width}x{height}")
    if height * width > max_pixels:
        raise ImageRejected(
            "size", f"{kind} image {width}x{height} exceeds the limit of {max_pixels} pixels")
    return kind, width, height


def _jpeg_size(view: memoryview) -> tuple[int, int]:
    """Walk the JPEG marker segments (a handful per file) to the start-of-frame header."""
    pos, end = 2, len(view)
    while pos + 4 <= end:
        if view[pos] != 0xFF:
            raise ImageRejected("corrupt", f"JPEG data is corrupt (no marker at byte {pos})")
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            break
        length = (view[pos + 2] << 8) | view[pos + 3]
        if length < 2:
            raise ImageRejected("corrupt", "JPEG data is corrupt (bad segment length)")
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                break
            height = (view[pos + 5] << 8) | view[pos + 6]
            width = (view[pos + 7] << 8) | view[pos + 8]
            return width, height
        pos += 2 + length
    raise ImageRejected("corrupt", "JPEG data has no frame header (SOF)")


def compressed_channel_order(format_field: str) -> str:
    """'rgb' or 'bgr': the channel order of the pixels inside a CompressedImage's payload.

    image_transport's compressed publisher writes `format` as "<encoding>; <codec> compressed
    <payload encoding>" (e.g. "rgb8; jpeg compressed bgr8"); the payload encoding says which
    order the codec was given, and its subscriber decodes accordingly. Old publishers write only
    the codec ("jpeg"), for which OpenCV's BGR order is the convention.
    """
    _, sep, payload = format_field.partition(" compressed ")
    payload = payload.strip().lower() if sep else ""
    return "rgb" if payload.startswith("rgb") else "bgr"


def compressed_to_rgb(data, max_pixels: int = DEFAULT_MAX_PIXELS,
                      format_field: str = "") -> np.ndarray:
    """Decode JPEG/PNG bytes of a sensor_msgs/CompressedImage to uint8 RGB [H, W, 3],
    honouring the channel order its `format` field names (`compressed_channel_order`)."""
    kind, width, height = compressed_header(data, max_pixels)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageRejected("corrupt", f"{kind} data cannot be decoded")
    if decoded.shape[:2] != (height, width):
        raise ImageRejected("corrupt", f"{kind} header says {width}x{height}, decoded "
                            f"{decoded.shape[1]}x{decoded.shape[0]}")
    if compressed_channel_order(format_field) == "rgb":
        return decoded  # the codec was given RGB: OpenCV's "BGR" array is RGB already
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


_FROM_RGB = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
             "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY}


def encode_rgb(rgb: np.ndarray, encoding: str) -> tuple[int, bytes]:
    """RGB array -> (step, data) of a sensor_msgs/Image in `encoding` (no row padding)."""
    if encoding not in _FROM_RGB:
        raise ValueError(f"cannot encode to '{encoding}' (supported: {', '.join(_FROM_RGB)})")
    conversion = _FROM_RGB[encoding]
    pixels = rgb if conversion is None else cv2.cvtColor(rgb, conversion)
    return pixels.shape[1] * SUPPORTED_ENCODINGS[encoding][0], pixels.tobytes()


def palette_lut(palette) -> np.ndarray:
    """256-entry colour table [256, 1, 3] for `colorize`: ids past the palette are black."""
    lut = np.zeros((256, 1, 3), np.uint8)
    colors = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
    lut[: len(colors), 0] = colors
    return lut


def colorize(labels: np.ndarray, palette) -> np.ndarray:
    """Class-id image [H, W] -> RGB colour mask via a 256-entry lookup table (OpenCV's
    colour-map LUT: ~0.7 ms at 1280x720, 13x faster than numpy fancy indexing).

    `palette` is [N, 3] colours or a table from `palette_lut`."""
    lut = palette if getattr(palette, "shape", None) == (256, 1, 3) else palette_lut(palette)
    return cv2.applyColorMap(np.ascontiguousarray(labels, np.uint8), lut)


def overlay(rgb: np.ndarray, color_mask: np.ndarray, alpha: float) -> np.ndarray:
    """Blend a colour mask over the image (alpha = weight of the mask)."""
    return cv2.addWeighted(color_mask, alpha, rgb, 1.0 - alpha, 0.0)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) times `scale`, rounded, at least 1x1."""
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` (height, width): area averaging to shrink, bilinear to enlarge, the
    array itself when it already has that size."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] * image.shape[1] > height * width
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
