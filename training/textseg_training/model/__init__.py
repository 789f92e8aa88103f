"""Segmentation models: STDC-Seg (optionally with the Textual Guidance Module) on STDC1, STDC2
or EfficientNet-Lite0/1/2 backbones, built from a small config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from textseg_training.config_keys import check_known_keys

from .backbones import BACKBONE_BUILDERS
from .efficientnet_backbone import EfficientNetLite0Backbone, EfficientNetLiteBackbone
from .stdc_backbone import LoadReport, STDCNet
from .stdc_seg import STDCSeg
from .text_guidance import TextGuidance

__all__ = [
    "BACKBONE_BUILDERS",
    "MODEL_BUILDERS",
    "EfficientNetLite0Backbone",
    "EfficientNetLiteBackbone",
    "LoadReport",
    "STDCNet",
    "STDCSeg",
    "SegModelConfig",
    "TextGuidance",
    "build_model",
]


@dataclass
class SegModelConfig:
    """What defines a model's architecture (and so its checkpoint layout).

    ``text_width``: 0 = plain STDC-Seg baseline; > 0 = with the Textual Guidance Module, whose
    class text embeddings have this width (1024 for CLIP RN50, 384 for MiniLM). The TGM adds
    ``num_classes`` score channels to F32; that count is derived, not configured.
    """

    backbone: str = "stdc1"
    num_classes: int = 11
    text_width: int = 0
    text_fusion: str = "tgm"  # tgm | bridge (text_bridge.py); only used when text_width > 0
    bridge_layers: int = 2  # bridge only: N layers of CNN + transformer + two-way attention
    bridge_width: int = 128  # bridge only: the common width d (a multiple of 32, the head width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "SegModelConfig") -> SegModelConfig:
        return cls(**check_known_keys(cls, data, source))


def _seg_on(backbone: str) -> Callable[..., STDCSeg]:
    """A builder of the STDC-Seg head on ``backbone``'s stride 8 / 16 / 32 features."""

    def build(num_classes: int, text_width: int, deploy: bool,
              text_fusion: str = "tgm", bridge_layers: int = 2,
              bridge_width: int = 128) -> STDCSeg:
        return STDCSeg(backbone, num_classes=num_classes, deploy=deploy, text_width=text_width,
                       text_fusion=text_fusion, bridge_layers=bridge_layers,
                       bridge_width=bridge_width)

    build.__name__ = f"{backbone}_seg"
    return build


# (num_classes, text_width, deploy, text_fusion) -> model: stdc1, stdc2, efficientnet_lite0/1/2.
MODEL_BUILDERS: dict[str, Callable[..., STDCSeg]] = {
    name: _seg_on(name) for name in BACKBONE_BUILDERS
}


def build_model(config: SegModelConfig, deploy: bool = False) -> STDCSeg:
    """Build the model described by ``config``; ``deploy`` drops the training-only heads.

    Weights are random: load a checkpoint, or ImageNet backbone weights with
    ``model.backbone.load_pretrained(path)``.
    """
    try:
        builder = MODEL_BUILDERS[config.backbone]
    except KeyError:
        raise ValueError(
            f"unknown backbone {config.backbone!r}; choose from {sorted(MODEL_BUILDERS)}"
        ) from None
    return builder(config.num_classes, config.text_width, deploy, config.text_fusion,
                   config.bridge_layers, config.bridge_width)
