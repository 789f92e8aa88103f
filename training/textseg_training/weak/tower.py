"""Frozen image towers of the weak mode: what WeCLIP's CLIP ViT-B/16 image encoder provides.

Every tower returns, at stride 16, the decoder's levels (WeCLIP: the tokens of blocks 1-11)
and the features the CAM is computed from (WeCLIP: block 12, `ln_post`, `proj`). Towers are
frozen: weights, BatchNorm statistics and dropout stay as loaded (`train()` is a no-op).

- `EfficientNetTower`: the offline stand-in. ImageNet EfficientNet-Lite, dilated to output
  stride 16 (the weights load unchanged); its stage 3-6 blocks are the levels (11 for Lite0),
  the 1280-channel head features give the CAM.
- `ClipViTTower`: CLIP ViT-B/16 through open_clip, for a user with the `ViT-B-16.pt` weights
  file (none exists on this project's machines: tested with random weights only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg_training.model.efficientnet_backbone import package_weights_path, rename_package_key
from textseg_training.model.stdc_backbone import LoadReport
from textseg_training.model.weights import read_state_dict
from textseg_training.text.torchvision_compat import ensure_torchvision_importable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TowerOutput:
    levels: list[Tensor]  # the decoder's inputs, [N, C_l, h, w] at stride 16
    cam_features: Tensor  # [N, C, h, w]: the features the CAM and the tag head read


class FrozenTower(nn.Module):
    """Base: frozen parameters, always in eval mode."""

    input_mean: tuple[float, float, float]
    input_std: tuple[float, float, float]
    level_channels: tuple[int, ...]
    cam_channels: int
    stride = 16

    def freeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTower:
        return self  # frozen: BatchNorm statistics and dropout never change


class EfficientNetTower(FrozenTower):
    """ImageNet EfficientNet-Lite at output stride 16 (timm ``tf_efficientnet_liteN``)."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)
    LEVEL_STAGES = (3, 4, 5, 6)  # strides 16 and (dilated) 32: Lite0 has 11 blocks there

    def __init__(self, variant: str = "lite0", weights: str | Path | None = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        ensure_torchvision_importable()
        import timm

        self.variant = variant
        self.net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False,
                                     output_stride=16)
        self.net.classifier = nn.Identity()
        self.stage_depths = tuple(len(stage) for stage in self.net.blocks)
        self.level_channels = tuple(
            (block.conv_pwl if hasattr(block, "conv_pwl") else block.conv_pw).out_channels
            for index in self.LEVEL_STAGES for block in self.net.blocks[index])
        self.cam_channels = self.net.conv_head.out_channels
        self.load_report = self.load_pretrained(weights) if pretrained else None
        self.freeze()

    def load_pretrained(self, path: str | Path | None = None) -> LoadReport:
        """ImageNet weights (the package's file when `path` is None), head features included:
        every tensor but the classifier must load."""
        path = str(package_weights_path(self.variant) if path is None else path)
        state = read_state_dict(path, f"EfficientNet-{self.variant} weights")
        own = self.net.state_dict()
        report = LoadReport(path=path)
        to_load = {}
        for raw_key, value in state.items():
            key = rename_package_key(raw_key.removeprefix("module."), self.stage_depths)
            if key.startswith("classifier."):
                report.skipped_classifier.append(raw_key)
            elif key in own and own[key].shape == value.shape:
                to_load[key] = value
            else:
                report.unexpected.append(raw_key)
        self.net.load_state_dict(to_load, strict=False)
        report.matched = sorted(to_load)
        report.missing = sorted(k for k in own if k not in to_load
                                and not k.endswith("num_batches_tracked"))
        if report.missing or report.unexpected:
            raise ValueError(f"{path}: not an EfficientNet-{self.variant} state dict "
                             f"(missing {report.missing[:4]}, unexpected {report.unexpected[:4]})")
        return report

    def forward(self, x: Tensor) -> TowerOutput:
        net = self.net
        x = net.bn1(net.conv_stem(x))
        levels: list[Tensor] = []
        for index, stage in enumerate(net.blocks):
            for block in stage:
                x = block(x)
                if index in self.LEVEL_STAGES:
                    levels.append(x)
        return TowerOutput(levels=levels, cam_features=net.bn2(net.conv_head(x)))


class ClipViTTower(FrozenTower):
    """CLIP ViT-B/16's image tower (open_clip): levels = patch tokens after blocks 1-11,
    CAM features = block 12's patch tokens through ``ln_post`` and ``proj`` (CLIP's joint
    space, 512 wide). Inputs are padded to a multiple of 16; the positional embedding is
    resampled to the patch grid."""

    input_mean = CLIP_MEAN
    input_std = CLIP_STD

    def __init__(self, weights: str | Path | None = None, allow_random: bool = False) -> None:
        super().__init__()
        ensure_torchvision_importable()
        import open_clip

        if weights is None and not allow_random:
            raise ValueError("tower clip-vit-b16 needs tower_weights: the OpenAI ViT-B-16.pt "
                             "file (no CLIP weights are downloaded), or allow_random_tower: "
                             "true for a test")
        model = open_clip.create_model("ViT-B-16", pretrained=None)
        if weights is not None:
            open_clip.load_checkpoint(model, str(weights))
        self.clip = model
        visual = model.visual
        width = visual.conv1.out_channels
        self.level_channels = (width,) * (len(visual.transformer.resblocks) - 1)
        self.cam_channels = visual.proj.shape[1]
        self.weights = None if weights is None else str(weights)
        self.freeze()

    def _positions(self, rows: int, cols: int) -> Tensor:
        embedding = self.clip.visual.positional_embedding
        cls_pos, grid = embedding[:1], embedding[1:]
        side = int(math.isqrt(grid.shape[0]))
        grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid.flatten(2).transpose(1, 2)[0]], dim=0)

    def forward(self, x: Tensor) -> TowerOutput:
        visual = self.clip.visual
        height, width = x.shape[-2:]
        x = F.pad(x, (0, (-width) % 16, 0, (-height) % 16))
        x = visual.conv1(x)
        n, channels, rows, cols = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        cls_token = visual.class_embedding.to(tokens.dtype).expand(n, 1, channels)
        tokens = torch.cat([cls_token, tokens], dim=1) + self._positions(rows, cols)
        tokens = visual.ln_pre(tokens)

        def grid(t: Tensor) -> Tensor:
            return t[:, 1:].transpose(1, 2).reshape(n, -1, rows, cols)

        levels = []
        blocks = visual.transformer.resblocks
        for block in blocks[:-1]:
            tokens = block(tokens)
            levels.append(grid(tokens))
        tokens = visual.ln_post(blocks[-1](tokens)) @ visual.proj
        return TowerOutput(levels=levels, cam_features=grid(tokens))

    def encode_text(self, class_names: list[str], template: str) -> Tensor:
        """CLIP's own text embeddings of the class names (WeCLIP's template)."""
        import open_clip

        tokens = open_clip.get_tokenizer("ViT-B-16")([template.format(n) for n in class_names])
        with torch.no_grad():
            return self.clip.encode_text(tokens).float()


def _lite(variant: str) -> Callable[..., FrozenTower]:
    def build(weights: str | None = None, allow_random: bool = False) -> FrozenTower:
        return EfficientNetTower(variant, weights=weights)

    return build


TOWERS: dict[str, Callable[..., FrozenTower]] = {
    "efficientnet_lite0": _lite("lite0"),
    "efficientnet_lite1": _lite("lite1"),
    "efficientnet_lite2": _lite("lite2"),
    "clip-vit-b16": lambda weights=None, allow_random=False: ClipViTTower(weights, allow_random),
}


def build_tower(name: str, weights: str | None = None, allow_random: bool = False
                ) -> FrozenTower:
    try:
        builder = TOWERS[name]
    except KeyError:
        raise ValueError(f"unknown tower {name!r}; choose from {sorted(TOWERS)}") from None
    return builder(weights=weights, allow_random=allow_random)
