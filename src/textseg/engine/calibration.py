"""Calibration images for int8 TensorRT engines: a folder of camera frames, fed at the
engine's input size exactly as the node would feed them (uint8 RGB [1, H, W, 3]).

TensorRT-free, so what the calibrator sees is tested here; the calibrator class itself lives
in tensorrt_backend.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from textseg.imaging import resize_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_LIMIT = 500  # TensorRT recommends roughly 500 images for entropy calibration


class CalibrationError(ValueError):
    pass


class CalibrationImages:
    def __init__(self, folder: str | Path, input_size: tuple[int, int],
                 limit: int = DEFAULT_LIMIT) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CalibrationError(f"calibration folder not found: {self.folder}")
        height, width = input_size
        if height <= 0 or width <= 0:
            raise CalibrationError(f"calibration size {width}x{height} is not positive")
        self.input_size = (int(height), int(width))
        files = sorted(p for p in self.folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CalibrationError(
                f"no calibration images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self.files = files[: max(1, limit)]

    def __len__(self) -> int:
        return len(self.files)

    def digest(self) -> str:
        """sha256 over names and contents: different images give a different engine."""
        digest = hashlib.sha256()
        digest.update(f"{self.input_size}".encode())
        for path in self.files:
            digest.update(path.name.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def batch(self, index: int) -> np.ndarray:
        """Image `index` as a C-contiguous uint8 [1, H, W, 3] RGB batch."""
        path = self.files[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CalibrationError(f"cannot read calibration image {path}")
        bgr = resize_image(bgr, self.input_size)
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None])

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self.files)):
            yield self.batch(index)
