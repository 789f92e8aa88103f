"""Segmentation models: STDC-Seg on STDC1/STDC2 backbones, built from a small config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from .stdc_backbone import LoadReport, STDCNet
from .stdc_seg import STDCSeg

__all__ = [
    "MODEL_BUILDERS",
    "LoadReport",
    "STDCNet",
    "STDCSeg",
    "SegModelConfig",
    "build_model",
]


@dataclass
class SegModelConfig:
    """What defines a model's architecture (and so its checkpoint layout)."""

    backbone: str = "stdc1"
    num_classes: int = 11
    text_channels: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            # A typo in a config file should fail loudly, not silently fall back to a default.
            raise ValueError(
                f"unknown SegModelConfig keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**data)


def _stdc1_seg(num_classes: int, text_channels: int, deploy: bool) -> STDCSeg:
    return STDCSeg("stdc1", num_classes=num_classes, deploy=deploy, text_channels=text_channels)


def _stdc2_seg(num_classes: int, text_channels: int, deploy: bool) -> STDCSeg:
    return STDCSeg("stdc2", num_classes=num_classes, deploy=deploy, text_channels=text_channels)


MODEL_BUILDERS: dict[str, Callable[[int, int, bool], STDCSeg]] = {
    "stdc1": _stdc1_seg,
    "stdc2": _stdc2_seg,
}


def build_model(config: SegModelConfig, deploy: bool = False) -> STDCSeg:
    """Build the model described by ``config``; ``deploy`` drops the training-only heads."""
    try:
        builder = MODEL_BUILDERS[config.backbone]
    except KeyError:
        raise ValueError(
            f"unknown backbone {config.backbone!r}; choose from {sorted(MODEL_BUILDERS)}"
        ) from None
    return builder(config.num_classes, config.text_channels, deploy)
