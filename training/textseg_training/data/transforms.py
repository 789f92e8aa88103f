"""Training augmentation and evaluation preprocessing with numpy / OpenCV.

Both take (image uint8 RGB [H,W,3], label integer [H,W]) and return (image float32 [3,H,W]
normalised with the backbone's mean/std on the 0..1 scale, label int64 [H,W]). Randomness comes
from one `numpy.random.Generator` per transform; `loader.build_loader` reseeds it in each worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor


def scale_range(start: float, stop: float, step: float) -> tuple[float, ...]:
    """Inclusive arithmetic range, e.g. (0.5, 2.5, 0.25) -> 0.5, 0.75, ..., 2.5 (9 scales)."""
    count = int(round((stop - start) / step)) + 1
    return tuple(round(start + i * step, 6) for i in range(count))


# The paper's random-scale sets (method.md); experiment configs pass them to TrainTransform.
CAMVID_SCALES = scale_range(0.5, 2.5, 0.25)
CITYSCAPES_SCALES = scale_range(0.125, 1.5, 0.125)

_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as torchvision


def _check_mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean/std must be 3 values (std > 0) on the 0..1 scale; got {mean}, "
                         f"{std}")
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 / 0..255 float [H,W,3] -> float32 (x/255 - mean) / std."""
    return (image.astype(np.float32) * (1.0 / 255.0) - mean) / std


def resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (no class mixing, any int dtype)."""
    h, w = label.shape
    rows = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.int64), w - 1)
    return label[rows[:, None], cols[None, :]]


def _to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[Tensor, Tensor]:
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    # astype copies: the label may be a read-only view of a cached pair.
    return img, torch.from_numpy(label.astype(np.int64))


class TrainTransform:
    """Random scale -> random crop (padded when smaller) -> h-flip -> colour jitter -> normalise.

    Args:
        crop_size: (height, width) of every output.
        scales: the scale factors drawn uniformly (e.g. `CAMVID_SCALES`).
        mean, std: the backbone's `input_mean` / `input_std` (0..1 scale).
        ignore_index: label value for padding.
        flip_prob: horizontal flip probability.
        brightness, contrast, saturation: jitter strengths; factors are drawn from
            [max(0, 1 - s), 1 + s] like torchvision's ColorJitter (the official code uses 0.5).
        seed: seed for the generator; `reseed` replaces it (done per data-loader worker).
    """

    def __init__(
        self,
        crop_size: tuple[int, int],
        scales: Sequence[float],
        mean: Sequence[float],
        std: Sequence[float],
        ignore_index: int,
        flip_prob: float = 0.5,
        brightness: float = 0.5,
        contrast: float = 0.5,
        saturation: float = 0.5,
        seed: int | None = None,
        photometric: str = "colour",
        light_prob: float = 0.5,
    ) -> None:
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"crop_size must be (height, width) > 0, got {crop_size}")
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive, got {scales}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scales = tuple(float(s) for s in scales)
        self.mean, self.std = _check_mean_std(mean, std)
        self.ignore_index = ignore_index
        self.flip_prob = flip_prob
        self.jitter = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        if photometric not in ("colour", "light"):
            raise ValueError(f"photometric must be 'colour' or 'light', got {photometric!r}")
        self.photometric = photometric
        self.light_prob = light_prob
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _colour_jitter(self, image: np.ndarray) -> np.ndarray:
        """Brightness / contrast / saturation in random order on a float 0..255 image."""
        for name in self.rng.permutation(list(self.jitter)):
            strength = self.jitter[str(name)]
            if strength <= 0:
                continue
            factor = np.float32(self.rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))
            if name == "brightness":
                image = image * factor
            elif name == "contrast":
                grey_mean = float((image @ _GREY_WEIGHTS).mean())
                image = (image - grey_mean) * factor + grey_mean
            else:
                grey = (image @ _GREY_WEIGHTS)[..., None]
                image = (image - grey) * factor + grey
            image = np.clip(image, 0.0, 255.0)  # torchvision clamps after every step
        return image

    def _other_light(self, image: np.ndarray) -> np.ndarray:
        """One of exposure, colour temperature or dusk on a float 0..255 RGB image."""
        kind = int(self.rng.integers(0, 3))
        if kind == 0:  # exposure: gamma < 1 brightens (over-exposed), > 1 darkens
            gamma = float(np.exp(self.rng.uniform(np.log(0.6), np.log(1.7))))
            image = 255.0 * np.power(image * (1.0 / 255.0), gamma)
        elif kind == 1:  # colour temperature: warm (red up, blue down) or cold
            shift = float(self.rng.uniform(-0.2, 0.2))
            image = image * np.array([1.0 + shift, 1.0, 1.0 - shift], dtype=np.float32)
        else:  # dusk: a fraction of the light, bluish, with sensor noise
            dim = float(self.rng.uniform(0.25, 0.6))
            tint = np.array([0.9, 0.95, 1.1], dtype=np.float32)
            noise = self.rng.normal(0.0, self.rng.uniform(2.0, 8.0), image.shape)
            image = image * (dim * tint) + noise.astype(np.float32)
        return np.clip(image, 0.0, 255.0).astype(np.float32)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[Tensor, Tensor]:
        scale = float(self.rng.choice(self.scales))
        h, w = label.shape
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (nh, nw) != (h, w):
            image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            label = resize_label(label, nh, nw)

        ch, cw = self.crop_size
        y0 = int(self.rng.integers(0, max(nh - ch, 0) + 1))
        x0 = int(self.rng.integers(0, max(nw - cw, 0) + 1))
        image = image[y0:y0 + ch, x0:x0 + cw]
        label = label[y0:y0 + ch, x0:x0 + cw]
        if self.rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]

        image = self._colour_jitter(image.astype(np.float32))
        if self.photometric == "light" and self.rng.random() < self.light_prob:
            image = self._other_light(image)
        image = normalize(image, self.mean, self.std)
        vh, vw = label.shape
        if (vh, vw) != (ch, cw):
            # Pad bottom/right: image with 0 after normalising (the mean colour), label ignored.
            padded = np.zeros((ch, cw, 3), dtype=np.float32)
            padded[:vh, :vw] = image
            padded_label = np.full((ch, cw), self.ignore_index, dtype=np.int64)
            padded_label[:vh, :vw] = label
            image, label = padded, padded_label
        return _to_tensors(image, label)


class EvalTransform:
    """Resize the image to `size` (height, width) (None keeps it) and normalise.

    The label keeps its full resolution by default so metrics are computed on the original
    annotation (`evaluate` upsamples logits to the label size); `resize_label=True` resizes it
    with nearest interpolation too (e.g. to batch images of different sizes).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        size: tuple[int, int] | None = None,
        resize_label: bool = False,
    ) -> None:
        self.mean, self.std = _check_mean_std(mean, std)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.resize_label = resize_label

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[Tensor, Tensor]:
        if self.size is not None and image.shape[:2] != self.size:
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
            if self.resize_label:
                label = resize_label(label, *self.size)
        return _to_tensors(normalize(image, self.mean, self.std), label)
