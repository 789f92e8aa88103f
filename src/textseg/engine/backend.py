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
    """Runs a contract model on RGB frames. Implementations are not thread-safe."""

    name: str
    info: ModelInfo
    has_confidence: bool
    # The most frames one `infer_batch` call runs as one inference (1: one at a time).
    max_batch: int
    # Whether one inference of N frames was measured to beat N inferences on this backend: the
    # node batches its cameras by default only then (docs/node.md, "Several cameras").
    batching_pays: bool
    # What the model's load-time self-check found here (textseg.engine.self_check), one line.
    self_check_note: str

    @property
    def description(self) -> str:
        """One line for logs and diagnostics: backend, device, precision."""
        ...

    def infer(self, rgb: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        """Segment one uint8 RGB image of shape [H, W, 3]."""
        ...

    def infer_batch(self, frames: list[np.ndarray], want_confidence: bool = False
                    ) -> list[SegmentationResult]:
        """Segment frames of one size together (at most `max_batch`); one result per frame."""
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


def check_batch(frames: list[np.ndarray], max_batch: int) -> np.ndarray:
    """Validate frames for one batched inference; return them stacked [N, H, W, 3]."""
    if not frames:
        raise ValueError("a batch needs at least one frame")
    if len(frames) > max_batch:
        raise ValueError(f"{len(frames)} frames in one batch, this backend takes at most "
                         f"{max_batch}")
    checked = [check_rgb(frame) for frame in frames]
    sizes = {frame.shape for frame in checked}
    if len(sizes) > 1:
        raise ValueError(f"the frames of one batch must have one size, got "
                         f"{sorted(f'{s[1]}x{s[0]}' for s in sizes)}")
    return np.stack(checked)
