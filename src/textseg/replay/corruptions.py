"""Camera-image corruptions at five severities, deterministic per seed (numpy and OpenCV).

The families follow what degrades a vehicle camera (ImageNet-C and Cityscapes-C name the same
kinds; the parameters here are ours, sized for 480x360 street frames and scaled with the frame
width): sensor noise, motion and defocus blur, fog, low light with its noise, over-exposure,
JPEG artefacts, rain streaks and dirt on the lens. Severity 1 is a mild case a camera meets on
an ordinary day, 5 a frame a driver would call nearly useless.

    corrupt(rgb, "fog", 3, seed=7) -> uint8 RGB of the same size

The same (frame, family, severity, seed) always gives the same bytes, on every machine with the
same numpy and OpenCV: the random draws come from numpy's PCG64 seeded by (seed, the CRC of
the family's name, severity). Families that draw nothing (defocus, over-exposure, JPEG) ignore
the seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import cv2
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_WIDTH = 480.0  # the pixel sizes below are for frames this wide; scaled for others

# Per family, one value (or tuple) per severity 1..5.
NOISE_SIGMA = (0.04, 0.08, 0.12, 0.18, 0.26)  # Gaussian sensor noise, of the full range
MOTION_LENGTH_PX = (5, 9, 15, 21, 29)  # blur streak, at a random angle within +-45 degrees
DEFOCUS_RADIUS_PX = (2, 3, 5, 7, 9)  # disk (the lens' circle of confusion)
FOG_DENSITY = (0.35, 0.7, 1.1, 1.6, 2.2)  # extinction over a patchy depth field
FOG_AIRLIGHT = 0.85
# Low light: exposure left, photons per full-scale pixel (shot noise), read noise.
LOW_LIGHT = ((0.45, 400, 0.008), (0.3, 250, 0.012), (0.2, 150, 0.016), (0.12, 90, 0.02),
             (0.07, 50, 0.025))
OVEREXPOSURE_GAIN = (1.5, 2.0, 2.6, 3.4, 4.5)
JPEG_QUALITY = (30, 20, 14, 9, 6)
# Rain: streaks per 480x360 frame, streak length (px), streak opacity, veil (contrast lost).
RAIN = ((120, 10, 0.35, 0.04), (240, 13, 0.4, 0.07), (400, 16, 0.45, 0.1),
        (600, 20, 0.5, 0.14), (850, 24, 0.55, 0.18))
# Lens dirt: blobs, their radius range (px), opacity range.
LENS_DIRT = ((4, (14, 30), (0.5, 0.7)), (6, (16, 36), (0.55, 0.75)), (9, (18, 42), (0.6, 0.8)),
             (12, (20, 48), (0.65, 0.85)), (16, (22, 54), (0.7, 0.9)))
DIRT_COLOUR = np.array([0.22, 0.18, 0.13], np.float32)  # dried mud, RGB


def _scale(rgb: np.ndarray) -> float:
    return rgb.shape[1] / REFERENCE_WIDTH


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, NOISE_SIGMA[severity - 1], x.shape).astype(np.float32)


def _motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    length = max(3, int(round(MOTION_LENGTH_PX[severity - 1] * _scale(x)))) | 1
    angle = np.deg2rad(rng.uniform(-45.0, 45.0))
    kernel = np.zeros((length, length), np.float32)
    centre, reach = length // 2, (length - 1) / 2
    dx, dy = reach * np.cos(angle), reach * np.sin(angle)
    cv2.line(kernel, (int(round(centre - dx)), int(round(centre - dy))),
             (int(round(centre + dx)), int(round(centre + dy))), 1.0, 1, cv2.LINE_AA)
    return cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def _defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius = max(1.0, DEFOCUS_RADIUS_PX[severity - 1] * _scale(x))
    size = 2 * int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[:size, :size] - size // 2
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
    disk = cv2.GaussianBlur(disk, (3, 3), 0.5)  # a lens' disk has soft edges
    return cv2.filter2D(x, -1, disk / disk.sum(), borderType=cv2.BORDER_REFLECT)


def _smooth_field(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """Values in [0, 1] varying over about `cell` pixels (random at a coarse grid, upsampled)."""
    h, w = shape
    coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    # Farther (denser) towards the horizon, in patches: a depth stand-in for the haze model.
    rows = np.linspace(1.0, 0.45, h, dtype=np.float32)[:, None]
    depth = rows * (0.6 + 0.4 * _smooth_field((h, w), max(8, int(48 * _scale(x))), rng))
    transmission = np.exp(-FOG_DENSITY[severity - 1] * depth)[..., None]
    return x * transmission + FOG_AIRLIGHT * (1.0 - transmission)


def _low_light(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    exposure, photons, read_noise = LOW_LIGHT[severity - 1]
    dark = exposure * np.power(x, 1.2)  # the sensor's linear response of a scene a step darker
    noisy = rng.poisson(dark * photons).astype(np.float32) / photons
    return noisy + rng.normal(0.0, read_noise, x.shape).astype(np.float32)


def _overexposure(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    bright = x * OVEREXPOSURE_GAIN[severity - 1]
    # Highlights bloom into their neighbours before the sensor clips.
    halo = cv2.GaussianBlur(np.clip(bright - 1.0, 0.0, None), (0, 0), 6.0 * _scale(x))
    return bright + 0.5 * halo


def _jpeg(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    bgr = cv2.cvtColor(_to_uint8(x), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY[severity - 1]])
    if not ok:
        raise RuntimeError("OpenCV could not encode the frame as JPEG")
    decoded = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return decoded.astype(np.float32) / 255.0


def _rain(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    count, length, opacity, veil = RAIN[severity - 1]
    scale = _scale(x)
    count = max(1, int(round(count * h * w / (480 * 360))))
    length = max(3.0, length * scale)
    slant = np.deg2rad(rng.uniform(-20.0, 20.0))  # one wind for the whole frame
    streaks = np.zeros((h, w), np.float32)
    starts = rng.random((count, 2)) * (w, h)
    lengths = length * rng.uniform(0.6, 1.4, count)
    for (sx, sy), reach in zip(starts, lengths, strict=True):
        end = (sx + reach * np.sin(slant), sy + reach * np.cos(slant))
        cv2.line(streaks, (int(sx), int(sy)), (int(end[0]), int(end[1])), 1.0, 1, cv2.LINE_AA)
    streaks = cv2.GaussianBlur(streaks, (3, 3), 0.7)[..., None] * opacity
    hazy = x * (1.0 - veil) + 0.7 * veil  # rain in the air lowers the contrast
    return hazy * (1.0 - streaks) + 0.9 * streaks


def _lens_dirt(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    count, (r_min, r_max), (a_min, a_max) = LENS_DIRT[severity - 1]
    scale = _scale(x)
    mask = np.zeros((h, w), np.float32)
    for _ in range(count):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (max(2, int(rng.uniform(r_min, r_max) * scale)),
                max(2, int(rng.uniform(r_min, r_max) * scale)))
        blob = np.zeros_like(mask)
        cv2.ellipse(blob, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        mask = np.maximum(mask, blob * rng.uniform(a_min, a_max))
    # Dirt on the lens is far out of focus: soft-edged.
    mask = cv2.GaussianBlur(mask, (0, 0), 3.0 * scale)[..., None]
    return x * (1.0 - mask) + DIRT_COLOUR * mask


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "motion_blur": _motion_blur,
    "defocus_blur": _defocus_blur,
    "fog": _fog,
    "low_light": _low_light,
    "overexposure": _overexposure,
    "jpeg": _jpeg,
    "rain": _rain,
    "lens_dirt": _lens_dirt,
}
FAMILIES = tuple(CORRUPTIONS)
SEEDLESS = ("defocus_blur", "overexposure", "jpeg")  # no random draws: the seed changes nothing


def check_corruption(family: str, severity: int) -> None:
    if family not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{family}': choose one of {', '.join(FAMILIES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 1..5, got {severity!r}")


def corrupt(rgb: np.ndarray, family: str, severity: int, seed: int = 0) -> np.ndarray:
    """`rgb` (uint8, H x W x 3) as the camera would see it under `family` at `severity`
    (1..5); a new array, `rgb` is not changed."""
    check_corruption(family, severity)
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
            and rgb.shape[2] == 3):
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"expected a uint8 H x W x 3 RGB frame, got "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)} {shape}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    # The family by its name's CRC, not its place in FAMILIES: a new family changes no bytes.
    rng = np.random.default_rng([int(seed), zlib.crc32(family.encode()), int(severity)])
    image = rgb.astype(np.float32) / 255.0
    return _to_uint8(CORRUPTIONS[family](image, severity, rng))
