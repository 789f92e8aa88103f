"""image_to_rgb / colorize / overlay against numpy references (no ROS needed)."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from textseg.imaging import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_ENCODINGS,
    ImageRejected,
    check_image_header,
    colorize,
    compressed_channel_order,
    compressed_header,
    compressed_to_rgb,
    image_to_rgb,
    overlay,
    resize_image,
    scaled_size,
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


# --- O(1) header checks and sensor_msgs/CompressedImage ----------------------------------

def test_header_check_needs_no_pixels():
    check_image_header("rgb8", H, W, W * 3 + 2, H * (W * 3 + 2))
    with pytest.raises(ImageRejected) as info:
        check_image_header("rgb8", 2**31, 2**31, 2**33, 0)
    assert info.value.reason == "size"


def _encoded(fmt: str, pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(fmt, pixels)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("fmt, kind", [(".png", "png"), (".jpg", "jpeg")])
def test_compressed_round_trip(fmt, kind):
    bgr = _pixels(3, 16, 24)
    data = _encoded(fmt, bgr)
    assert compressed_header(data) == (kind, 24, 16)
    rgb = compressed_to_rgb(data)
    assert rgb.shape == (16, 24, 3)
    if kind == "png":  # lossless: exactly the pixels, RGB order
        np.testing.assert_array_equal(rgb, bgr[..., ::-1])


@pytest.mark.parametrize("format_field, payload_is_rgb", [
    ("", False),                                    # bare codec: OpenCV's BGR convention
    ("jpeg", False),
    ("bgr8; jpeg compressed bgr8", False),          # image_transport, BGR camera
    ("rgb8; jpeg compressed bgr8", False),          # image_transport, RGB camera (usual)
    ("rgb8; png compressed rgb8", True),            # payload encoded from RGB order
    ("rgba8; png compressed rgba8", True),
])
def test_compressed_format_field_sets_the_channel_order(format_field, payload_is_rgb):
    scene = _pixels(3, 16, 24)  # the camera's RGB pixels
    payload = scene if payload_is_rgb else scene[..., ::-1]  # what the codec was given
    data = _encoded(".png", np.ascontiguousarray(payload))
    assert compressed_channel_order(format_field) == ("rgb" if payload_is_rgb else "bgr")
    np.testing.assert_array_equal(compressed_to_rgb(data, format_field=format_field), scene)


def test_compressed_grey_jpeg_decodes_to_rgb():
    data = _encoded(".jpg", _pixels(1, 8, 8))
    assert compressed_to_rgb(data).shape == (8, 8, 3)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming any size (a decompression bomb needs no more)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + body + end


@pytest.mark.parametrize("data, reason", [
    (b"", "size"),
    (b"GIF89a" + bytes(40), "format"),
    (bytes(100), "format"),
    (b"\x89PNG\r\n\x1a\n" + bytes(10), "corrupt"),
    (_png_claiming(60000, 60000), "size"),
    (_png_claiming(0, 10), "size"),
    (b"\xff\xd8\xff\xd9", "corrupt"),
    (b"\xff\xd8\x00\x00\x00\x00\xff\xd9", "corrupt"),
])
def test_compressed_rejections(data, reason):
    with pytest.raises(ImageRejected) as info:
        compressed_to_rgb(data)
    assert info.value.reason == reason, str(info.value)


@pytest.mark.parametrize("fmt", [".png", ".jpg"])
def test_truncated_compressed_is_rejected(fmt):
    data = _encoded(fmt, _pixels(3, 32, 32))
    with pytest.raises(ImageRejected) as info:
        compressed_to_rgb(data[: len(data) // 2])
    assert info.value.reason == "truncated"


def test_corrupt_png_body_is_rejected():
    data = bytearray(_encoded(".png", _pixels(3, 32, 32)))
    data[40:60] = bytes(20)  # inside the compressed image data
    with pytest.raises(ImageRejected) as info:
        compressed_to_rgb(bytes(data))
    assert info.value.reason == "corrupt"


def test_scaled_size():
    assert scaled_size(720, 1280, 1.0) == (720, 1280)
    assert scaled_size(720, 1280, 0.5) == (360, 640)
    assert scaled_size(3, 3, 0.01) == (1, 1)


@pytest.mark.parametrize(("size", "interpolation"), [((24, 32), cv2.INTER_AREA),
                                                     ((96, 128), cv2.INTER_LINEAR)])
def test_resize_image_shrinks_by_area_and_enlarges_bilinear(size, interpolation):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    expected = cv2.resize(image, (size[1], size[0]), interpolation=interpolation)
    np.testing.assert_array_equal(resize_image(image, size), expected)
    assert resize_image(image, (48, 64)) is image
