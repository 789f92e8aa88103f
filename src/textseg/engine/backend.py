"""The one small interface every inference backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from textseg.engine.contract import ModelInfo


@dataclass(frozen=True)
class SegmentationResult:
    labels: np.ndarray  # uint8 [H, W] class ids at the input resolution
    confidence: np.ndarray | None  # uint8 [H, W] max probability * 255, when the model has it


class SegmentationBackend(Protocol):
    """Runs a contract model on one RGB frame. Implementations are not thread-safe."""

    name: str
    info: ModelInfo
    has_confidence: bool

    @property
    def description(self) -> str:
        """One line for logs and diagnostics: backend, device, precision."""
        ...

    def infer(self, rgb: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        """Segment one uint8 RGB image of shape [H, W, 3]."""
        ...

    def close(self) -> None:
        """Release devices and buffers."""
        ...


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate a frame for inference; return it C-contiguous."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise TypeError(f"expected a uint8 numpy image, got {type(rgb).__name__} "
                        f"{getattr(rgb, 'dtype', '')}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected an RGB image of shape [H, W, 3], got {rgb.shape}")
    return np.ascontiguousarray(rgb)
