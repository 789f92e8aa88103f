"""STDC-Seg: BiSeNet-style segmentation head on an STDC (or EfficientNet-Lite0) backbone.

Follows the structure of the official STDC-Seg model (ContextPath with ARM16/ARM32 and a global
context branch, FFM fusing the stride-8 backbone feature with the context path, a 1/8 output
head, two auxiliary heads and a stride-8 detail head used only in training).

With ``text_width > 0`` the Textual Guidance Module (TGM, ``text_guidance.py``) concatenates
K cosine score maps to F32 before ARM32 and the global branch.

Training mode returns a dict of logits at their native strides (plus the TGM's ``score`` map);
deploy mode builds neither the auxiliary nor the detail heads and returns the main logits at
1/8 resolution. Upsampling to input size is left to the caller (loss / export wrapper).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import Tensor, nn

from .backbones import BACKBONE_BUILDERS, Backbone
from .stdc_backbone import ConvX as ConvBNReLU  # the head's name for the same unit and keys
from .text_bridge import TextBridge
from .text_guidance import TextGuidance

TEXT_FUSIONS = ("tgm", "bridge")

# Submodules built only for training; a deploy model has every other key.
TRAIN_ONLY_MODULES = ("aux16", "aux32", "detail_head")


class AttentionRefinementModule(nn.Module):
    """3x3 ConvBNReLU, then reweight channels by a sigmoid of their global average."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_chs, out_chs, 3)
        self.conv_atten = nn.Conv2d(out_chs, out_chs, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        # mean over H, W exports as ReduceMean, unlike avg_pool2d with a size-dependent kernel.
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * atten


class FeatureFusionModule(nn.Module):
    """Concat spatial + context features, 1x1 ConvBNReLU, then SE-style residual reweighting."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_chs, out_chs, 1)
        self.conv1 = nn.Conv2d(out_chs, out_chs // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chs // 4, out_chs, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, fsp: Tensor, fcp: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = feat.mean((2, 3), keepdim=True)
        atten = torch.sigmoid(self.conv2(self.relu(self.conv1(atten))))
        return feat + feat * atten


class SegHead(nn.Module):
    """3x3 ConvBNReLU to ``mid_chs`` then a 1x1 classifier (no bias, as the official code)."""

    def __init__(self, in_chs: int, mid_chs: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_chs, mid_chs, 3)
        self.conv_out = nn.Conv2d(mid_chs, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class ContextPath(nn.Module):
    """Top-down context from F16/F32: ARMs, a global-average branch and nearest upsampling.

    Takes the backbone features (not the image) so that F32 can be fused with extra channels
    (e.g. a text score map) before entering ARM32 and the global branch.
    Returns (context at 1/8, context at 1/16), both ``out_chs`` wide.
    """

    def __init__(self, in16: int = 512, in32: int = 1024, out_chs: int = 128) -> None:
        super().__init__()
        self.arm16 = AttentionRefinementModule(in16, out_chs)
        self.arm32 = AttentionRefinementModule(in32, out_chs)
        self.conv_head32 = ConvBNReLU(out_chs, out_chs, 3)
        self.conv_head16 = ConvBNReLU(out_chs, out_chs, 3)
        self.conv_avg = ConvBNReLU(in32, out_chs, 1)

    def forward(self, feat8: Tensor, feat16: Tensor, feat32: Tensor) -> tuple[Tensor, Tensor]:
        # The official code upsamples the 1x1 global vector with 'nearest'; broadcasting the add
        # is the same result without materialising it.
        avg = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + avg
        feat32_up = F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(feat32_up)

        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest")
        feat16_up = self.conv_head16(feat16_up)
        return feat16_up, feat32_up


class STDCSeg(nn.Module):
    """STDC-Seg network, optionally with the Textual Guidance Module.

    Args:
        backbone: a key of ``BACKBONE_BUILDERS`` ('stdc1', 'stdc2', 'efficientnet_lite0/1/2').
        num_classes: number of segmentation classes K.
        deploy: build only what the main output needs (no aux / detail heads).
        text_width: 0 for the plain baseline; > 0 adds the TGM with K class text embeddings of
            this width, widening ARM32 and the global branch by K score channels.
        text_fusion: "tgm" (the paper's cosine score map) or "bridge" (seed 001's CNN +
            transformer with a two-way bridge, ``text_bridge.py``); same interface. The module
            is the ``tgm`` attribute either way, so checkpoint keys stay ``tgm.*``.
    """

    def __init__(
        self,
        backbone: str = "stdc1",
        num_classes: int = 19,
        deploy: bool = False,
        text_width: int = 0,
        text_fusion: str = "tgm",
        bridge_layers: int = 2,
        bridge_width: int = 128,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONE_BUILDERS:
            raise ValueError(
                f"unknown backbone {backbone!r}; choose from {sorted(BACKBONE_BUILDERS)}"
            )
        if num_classes < 1 or text_width < 0:
            raise ValueError(f"bad num_classes={num_classes} / text_width={text_width}")
        if text_fusion not in TEXT_FUSIONS:
            raise ValueError(f"text_fusion {text_fusion!r} is not one of {TEXT_FUSIONS}")
        self.text_fusion = text_fusion
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.deploy = deploy
        self.text_width = text_width
        # Derived, not configured: the TGM adds exactly one score map per class.
        self.text_channels = num_classes if text_width > 0 else 0
        self._backbone_frozen = False
        self._all_frozen = False  # freeze_all: stage 2 with the prompts alone learning

        self.backbone: Backbone = BACKBONE_BUILDERS[backbone]()
        _, _, c8, c16, c32 = self.backbone.feature_channels
        self.tgm: TextGuidance | TextBridge | None = None
        if text_width > 0 and text_fusion == "bridge":
            self.tgm = TextBridge(c32, num_classes, text_width, width=bridge_width,
                                  layers=bridge_layers)
        elif text_width > 0:
            self.tgm = TextGuidance(c32, num_classes, text_width)
        cp_chs = 128
        self.cp = ContextPath(in16=c16, in32=c32 + self.text_channels, out_chs=cp_chs)
        self.ffm = FeatureFusionModule(c8 + cp_chs, 256)
        self.conv_out = SegHead(256, 256, num_classes)
        if not deploy:
            self.aux16 = SegHead(cp_chs, 64, num_classes)
            self.aux32 = SegHead(cp_chs, 64, num_classes)
            # Detail guidance on the stride-8 backbone feature (boundary logits, 1 channel).
            self.detail_head = SegHead(c8, 64, 1)
        self._init_head_weights()

    def _init_head_weights(self) -> None:
        # Official head init: kaiming normal with a=1 on every conv; BN stays at (1, 0).
        # The backbone keeps its own init (or pretrained weights). Covers the TGM projection.
        for name, m in self.named_modules():
            if name.startswith("backbone"):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def set_text_embeddings(self, embeddings: Tensor) -> None:
        """Store the class text embeddings [K, text_width] in the TGM's buffer."""
        if self.tgm is None:
            raise ValueError("this model has no Textual Guidance Module (text_width=0)")
        self.tgm.set_text_embeddings(embeddings)

    def forward(
        self, x: Tensor, text_embeddings: Tensor | None = None
    ) -> Tensor | dict[str, Tensor]:
        """Logits at 1/8 (deploy), or a dict of training outputs.

        ``text_embeddings`` [K, text_width] replaces the TGM's buffer for this call (stage 2:
        the prompt learner's output); by default the buffer is used.
        """
        _, _, feat8, feat16, feat32 = self.backbone(x)
        score: Tensor | None = None
        if self.tgm is not None:
            feat32, score = self.tgm(feat32, text_embeddings)
        elif text_embeddings is not None:
            raise ValueError("text_embeddings given to a model without TGM (text_width=0)")
        cp8, cp16 = self.cp(feat8, feat16, feat32)
        out = self.conv_out(self.ffm(feat8, cp8))
        if self.deploy:
            return out
        outputs = {
            "out": out,  # 1/8
            "aux16": self.aux16(cp8),  # 1/8 (ARM16 branch after upsampling)
            "aux32": self.aux32(cp16),  # 1/16 (ARM32 branch after upsampling)
        }
        if not self._backbone_frozen:  # see freeze_backbone: no detail head on a frozen one
            outputs["detail"] = self.detail_head(feat8)  # 1/8
        if score is not None:
            outputs["score"] = score  # 1/32, raw cosine in [-1, 1]; the text loss divides by tau
        return outputs

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the backbone: no gradients and BN statistics kept as they are.

        Stage 2 trains prompts (and the head) on a fixed backbone: its parameters get
        ``requires_grad=False`` (so ``param_groups`` leaves them out) and the whole backbone
        stays in eval mode across ``model.train()`` calls, so BN running stats never move.

        The detail head is frozen with it and no longer run: it reads only the (now fixed)
        stride-8 backbone feature and exists only to shape that feature through the detail
        loss, so on a frozen backbone it could learn nothing useful (and it is not exported).
        """
        self._backbone_frozen = frozen
        frozen_parts = [self.backbone] + ([self.detail_head] if not self.deploy else [])
        for part in frozen_parts:
            for p in part.parameters():
                p.requires_grad_(not frozen)
        self.train(self.training)

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def freeze_text_projection(self) -> None:
        """Freeze the TGM's 1x1 projection (F32 -> text width) with the backbone.

        The authors' backbone ends at the text width (STDC's 1024 = CLIP RN50's), so in their
        stage 2 the visual side of the cosine is fixed and only the prompts move the score map.
        Here the projection stands for that last backbone width; trained in stage 2 it can make
        any change to the score map the prompts could, and the text is ignored. The bridge has
        no such single layer and is left as it is."""
        proj = getattr(self.tgm, "proj", None) if isinstance(self.tgm, TextGuidance) else None
        if proj is not None:
            for p in proj.parameters():
                p.requires_grad_(False)

    def freeze_all(self) -> None:
        """Every parameter frozen and every BN in inference mode: stage 2 where only the
        prompts learn (the paper's "fix the STDC backbone and adjust the learnable prompts")."""
        self.freeze_backbone()
        self._all_frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> STDCSeg:
        super().train(mode)
        if self._all_frozen:
            for module in self.children():
                module.eval()  # BN statistics never move; the loss still reaches the prompts
        elif self._backbone_frozen:
            # A frozen backbone is always in inference mode (BN uses, never updates, its stats).
            self.backbone.eval()
        return self

    def deploy_state_dict(self) -> dict[str, Tensor]:
        """State dict without training-only heads; loads strictly into a deploy model.

        Keeps ``tgm.text_embeddings`` (a persistent buffer): the deploy graph's only text.
        """
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith(tuple(f"{m}." for m in TRAIN_ONLY_MODULES))
        }

    def param_groups(
        self, lr: float, weight_decay: float, head_lr_mult: float = 10.0,
        backbone_lr_mult: float = 1.0,
    ) -> list[dict[str, Any]]:
        """Optimizer groups: backbone at ``lr * backbone_lr_mult``, the rest (TGM projection
        included) at ``lr * head_lr_mult``.

        Parameters with ndim <= 1 (BN affine, biases) get no weight decay. Frozen parameters
        (``freeze_backbone``) are left out; empty groups are dropped.
        """
        groups: dict[str, list[nn.Parameter]] = {
            "backbone_decay": [],
            "backbone_no_decay": [],
            "head_decay": [],
            "head_no_decay": [],
        }
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            part = "backbone" if name.startswith("backbone.") else "head"
            kind = "no_decay" if p.ndim <= 1 else "decay"
            groups[f"{part}_{kind}"].append(p)
        return [
            {
                "name": name,
                "params": params,
                "lr": lr * (backbone_lr_mult if name.startswith("backbone") else head_lr_mult),
                "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
            }
            for name, params in groups.items()
            if params
        ]
