"""image_to_rgb / colorize / overlay against numpy references (no ROS needed)."""

from __future__ import annotations

import array

import numpy as np
import pytest

from textseg.imaging import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_ENCODINGS,
    ImageRejected,
    colorize,
    image_to_rgb,
    overlay,
)

H, W = 5, 7
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def _pixels(channels: int, height: int = H, width: int = W) -> np.ndarray:
    rng = np.random.default_rng(channels)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _reference_rgb(encoding: str, pixels: np.ndarray) -> np.ndarray:
    """What the frame looks like as RGB, computed with plain numpy indexing."""
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return pixels[..., ::-1]
    if encoding == "rgba8":
        return pixels[..., :3]
    if encoding == "bgra8":
        return pixels[..., 2::-1]
    if encoding == "mono8":
        return np.repeat(pixels[..., None], 3, axis=2)
    raise AssertionError(encoding)


def _message_bytes(pixels: np.ndarray, step: int) -> bytes:
    """Row-major bytes with each row padded to `step` bytes (padding filled with 0xAB)."""
    height = pixels.shape[0]
    row = pixels.reshape(height, -1)
    padded = np.full((height, step), 0xAB, np.uint8)
    padded[:, : row.shape[1]] = row
    return padded.tobytes()


def test_supported_encodings_listed():
    assert set(SUPPORTED_ENCODINGS) == set(CHANNELS)


@pytest.mark.parametrize("encoding", sorted(CHANNELS))
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("container", ["bytes", "array"])
def test_image_to_rgb_matches_reference(encoding, padding, container):
    channels = CHANNELS[encoding]
    pixels = _pixels(channels)
    step = W * channels + padding
    raw = _message_bytes(pixels, step)
    data = raw if container == "bytes" else array.array("B", raw)
    rgb = image_to_rgb(encoding, H, W, step, data)
    assert rgb.shape == (H, W, 3)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, _reference_rgb(encoding, pixels))


def test_bgr8_swaps_red_and_blue():
    bgr = np.zeros((1, 2, 3), np.uint8)
    bgr[0, 0] = (255, 0, 0)  # blue in BGR order
    bgr[0, 1] = (10, 20, 30)
    rgb = image_to_rgb("bgr8", 1, 2, 6, bgr.tobytes())
    assert rgb[0, 0].tolist() == [0, 0, 255]
    assert rgb[0, 1].tolist() == [30, 20, 10]


def test_rgb8_unpadded_is_zero_copy_view():
    source = array.array("B", _pixels(3).tobytes())
    rgb = image_to_rgb("rgb8", H, W, W * 3, source)
    assert np.shares_memory(rgb, np.frombuffer(source, np.uint8))
    source[0] = (source[0] + 1) % 256  # a change in the buffer shows through the view
    assert rgb[0, 0, 0] == source[0]


def test_padded_rgb8_drops_padding_bytes():
    pixels = _pixels(3)
    rgb = image_to_rgb("rgb8", H, W, W * 3 + 5, _message_bytes(pixels, W * 3 + 5))
    np.testing.assert_array_equal(rgb, pixels)
    assert not (rgb == 0xAB).all(axis=2).any()


@pytest.mark.parametrize("encoding, height, width, step, nbytes, reason", [
    ("yuv422", H, W, W * 2, H * W * 2, "encoding"),
    ("16UC1", H, W, W * 2, H * W * 2, "encoding"),
    ("rgb8", 0, W, W * 3, 0, "size"),
    ("rgb8", H, 0, 0, 0, "size"),
    ("rgb8", -1, W, W * 3, 0, "size"),
    ("rgb8", H, W, W * 3 - 1, H * (W * 3 - 1), "step"),
    ("rgba8", H, W, W * 3, H * W * 3, "step"),
    ("rgb8", H, W, W * 3, H * W * 3 - 1, "data_size"),
    ("rgb8", H, W, W * 3, H * W * 3 + 1, "data_size"),
    ("mono8", H, W, W + 2, H * W, "data_size"),
])
def test_rejections(encoding, height, width, step, nbytes, reason):
    with pytest.raises(ImageRejected) as info:
        image_to_rgb(encoding, height, width, step, bytes(nbytes))
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_rejects_too_many_pixels_before_touching_data():
    # A corrupt header claiming a huge image must be refused without allocating anything.
    with pytest.raises(ImageRejected) as info:
        image_to_rgb("rgb8", 100_000, 100_000, 300_000, b"")
    assert info.value.reason == "size"
    with pytest.raises(ImageRejected) as info:
        image_to_rgb("rgb8", H, W, W * 3, bytes(H * W * 3), max_pixels=H * W - 1)
    assert info.value.reason == "size"
    assert image_to_rgb("rgb8", H, W, W * 3, bytes(H * W * 3), max_pixels=H * W).shape == (H, W, 3)
    assert DEFAULT_MAX_PIXELS >= 4096 * 4096


def test_colorize_uses_palette_and_black_for_unknown_ids():
    palette = np.array([(1, 2, 3), (4, 5, 6), (7, 8, 9)], np.uint8)
    labels = np.array([[0, 1, 2], [2, 255, 3]], np.uint8)
    mask = colorize(labels, palette)
    assert mask.shape == (2, 3, 3)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask[0], palette)
    assert mask[1, 0].tolist() == [7, 8, 9]
    assert mask[1, 1].tolist() == [0, 0, 0]
    assert mask[1, 2].tolist() == [0, 0, 0]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_overlay_blends(alpha):
    rgb = _pixels(3)
    mask = np.full_like(rgb, 200)
    out = overlay(rgb, mask, alpha)
    assert out.shape == rgb.shape
    assert out.dtype == np.uint8
    expected = np.round(alpha * mask.astype(float) + (1 - alpha) * rgb.astype(float))
    assert np.abs(out.astype(float) - expected).max() <= 1
