"""What every inference backend shares: the `SegmentationBackend` protocol the node and the
tools program against (with what the node asks of a backend: `max_batch`, `batching_pays`,
`prepare_confidence`), its `SegmentationResult`, the `BackendOptions` that `load_backend`
opens a model with, and the frame checks each backend runs before an inference."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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

    def prepare_confidence(self) -> None:
        """Make ready now what the first frame that wants confidence would otherwise wait for
        (nothing where confidence costs no set-up)."""
        ...

    def close(self) -> None:
        """Release devices and buffers."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """How `textseg.engine.load_backend` opens a model; each backend reads the options that
    apply to it and ignores the others."""

    backend: str = "auto"  # one of textseg.engine.BACKENDS
    # ONNX Runtime: CPU threads (0 = all cores); worker threads busy-wait between operators.
    threads: int = 0
    spin_wait: bool = False
    # TensorRT: engine precision; the engine cache ('' = the default); build a missing engine
    # (else fail); images for int8 calibration.
    precision: str = "fp16"
    cache_dir: str | Path = ""
    allow_build: bool = True
    calibration_dir: str | Path = ""
    # TensorRT: build or load the engine for this (height, width) now, not on the first frame.
    input_size: tuple[int, int] | None = None
    # TensorRT: engines with one profile per batch size 1..max_batch (several cameras in one
    # inference). ONNX Runtime takes any batch of a model whose batch axis is dynamic.
    max_batch: int = 1
    # Set to stop an engine build in progress (e.g. at shutdown).
    cancel: threading.Event | None = None
    # When the model's stored self-check fails here (textseg.engine.self_check): refuse (an
    # error), warn (through `report`) or off.
    self_check: str = "refuse"
    report: Callable[[str], None] | None = None  # progress and warnings, one line each


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
