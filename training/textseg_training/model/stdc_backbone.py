"""STDC backbones (STDC1 = "STDCNet813", STDC2 = "STDCNet1446").

Short-Term Dense Concatenate networks from "Rethinking BiSeNet For Real-time Semantic
Segmentation" (Fan et al., CVPR 2021). Parameter names follow the official implementation
(``features.N.conv_list.M.conv.weight`` ...) so its ImageNet checkpoints load by key.

The official model also registers ``x2 .. x32`` as slices of ``features``; those are the same
modules under a second name, so we keep only ``features`` and record the stage boundaries.
The ImageNet classifier (``conv_last``, ``fc``, ``bn``, ``linear``) is never built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from textseg_training.model.weights import read_state_dict

# Key prefixes of the official classifier; present in ImageNet checkpoints, unused here.
CLASSIFIER_PREFIXES = ("conv_last.", "fc.", "bn.", "linear.")
_ALIAS_RE = re.compile(r"^x(2|4|8|16|32)\.0\.(\d+)\.(.+)$")


class ConvX(nn.Module):
    """Conv (no bias) + BN + ReLU, the basic unit of every STDC block."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class CatBottleneck(nn.Module):
    """STDC module: a chain of ConvX whose outputs are concatenated.

    Widths halve along the chain (out/2, out/4, out/8, out/8 for 4 blocks) so the
    concatenation is exactly ``out_chs`` wide. With stride 2 the downsampling happens on the
    first branch output: a depthwise 3x3 stride-2 conv feeds the chain, and a 3x3 avg-pool
    brings the first branch itself to the new resolution for the concat.
    """

    def __init__(self, in_chs: int, out_chs: int, block_num: int = 4, stride: int = 1) -> None:
        super().__init__()
        if block_num < 2:
            raise ValueError(f"block_num must be >= 2, got {block_num}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        half = out_chs // 2
        if stride == 2:
            # Names 'avd_layer' / 'skip' match the official checkpoint.
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, stride=2, padding=1, groups=half, bias=False),
                nn.BatchNorm2d(half),
            )
            self.skip = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)

        self.conv_list = nn.ModuleList([ConvX(in_chs, half, kernel_size=1)])
        for idx in range(1, block_num):
            in_w = out_chs // 2**idx
            # Every branch halves the width except the last, which keeps it so the sum closes.
            out_w = in_w if idx == block_num - 1 else out_chs // 2 ** (idx + 1)
            self.conv_list.append(ConvX(in_w, out_w))

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.conv_list[0](x)
        out = self.avd_layer(out1) if self.stride == 2 else out1
        outs = []
        for conv in self.conv_list[1:]:
            out = conv(out)
            outs.append(out)
        if self.stride == 2:
            out1 = self.skip(out1)
        return torch.cat([out1, *outs], dim=1)


@dataclass
class LoadReport:
    """What happened when an official checkpoint was loaded into a backbone."""

    path: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = len(self.matched) + len(self.missing)
        return (
            f"{self.path}: loaded {len(self.matched)}/{total} backbone tensors, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.skipped_classifier)} classifier tensors skipped"
        )


class STDCNet(nn.Module):
    """STDC backbone returning features at strides (2, 4, 8, 16, 32).

    ``layers`` is the number of STDC modules per stage at strides 8/16/32; the first module of
    each stage downsamples. ``features`` holds the stem and all modules flat, matching the
    official checkpoint layout.
    """

    feature_strides: tuple[int, ...] = (2, 4, 8, 16, 32)
    # Input normalisation (RGB on the 0..1 scale) the weights expect: the ImageNet statistics
    # of the official STDC checkpoints. The training data pipeline and the export read these
    # attributes, so the constants exist only here and travel inside every exported model.
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(
        self, layers: tuple[int, ...] = (2, 2, 2), base: int = 64, block_num: int = 4
    ) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ValueError(f"expected 3 stage depths, got {layers}")
        self.layers = tuple(layers)
        blocks: list[nn.Module] = [ConvX(3, base // 2, 3, 2), ConvX(base // 2, base, 3, 2)]
        channels = [base // 2, base]
        in_chs = base
        for i, depth in enumerate(layers):
            out_chs = base * 2 ** (i + 2)
            for j in range(depth):
                blocks.append(CatBottleneck(in_chs, out_chs, block_num, stride=2 if j == 0 else 1))
                in_chs = out_chs
            channels.append(out_chs)
        self.features = nn.Sequential(*blocks)
        self.feature_channels: tuple[int, ...] = tuple(channels)
        # End index (exclusive) of each stride's slice of `features`: x2, x4, x8, x16, x32.
        ends = [1, 2]
        for depth in layers:
            ends.append(ends[-1] + depth)
        self.stage_ends: tuple[int, ...] = tuple(ends)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        start = 0
        for end in self.stage_ends:
            for idx in range(start, end):
                x = self.features[idx](x)
            feats.append(x)
            start = end
        return feats

    def _canonical_key(self, key: str) -> str:
        """Map official aliases (``x8.0.1.conv_list...``) onto ``features.N...``."""
        m = _ALIAS_RE.match(key)
        if m is None:
            return key
        stage = self.feature_strides.index(int(m.group(1)))
        start = 0 if stage == 0 else self.stage_ends[stage - 1]
        return f"features.{start + int(m.group(2))}.{m.group(3)}"

    def load_pretrained(self, path: str | Path | None = None) -> LoadReport:
        """Common backbone interface: ImageNet weights from ``path`` (required for STDC).

        STDC's official checkpoints cannot be shipped or downloaded here, so there is no
        default file; see :meth:`load_official_checkpoint`.
        """
        if path is None:
            raise ValueError(
                "STDC ImageNet weights are not shipped: pass the official checkpoint "
                "(STDCNet813M_73.91.tar for stdc1, STDCNet1446_76.47.tar for stdc2)"
            )
        return self.load_official_checkpoint(path)

    def load_official_checkpoint(self, path: str | Path) -> LoadReport:
        """Load an official STDC ImageNet checkpoint (``{'state_dict': ...}``) or a state dict.

        The classifier is skipped, aliases and a DataParallel ``module.`` prefix are resolved,
        and the rest loads non-strictly. Raises ValueError if the file is unreadable, has
        shape mismatches, or shares no key with this backbone.
        """
        path = str(path)
        ckpt = read_state_dict(path, "STDC checkpoint")

        report = LoadReport(path=path)
        own = self.state_dict()
        to_load: dict[str, Tensor] = {}
        mismatched: list[str] = []
        for raw_key, value in ckpt.items():
            if not isinstance(raw_key, str) or not isinstance(value, Tensor):
                continue
            key = raw_key.removeprefix("module.")
            if key.startswith(CLASSIFIER_PREFIXES):
                report.skipped_classifier.append(raw_key)
                continue
            key = self._canonical_key(key)
            if key not in own:
                report.unexpected.append(raw_key)
            elif key in to_load:
                continue  # an alias of a tensor already taken from `features.N`
            elif own[key].shape != value.shape:
                mismatched.append(f"{raw_key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
            else:
                to_load[key] = value
        if mismatched:
            raise ValueError(
                f"STDC checkpoint {path!r} does not fit this backbone (layers={self.layers}); "
                f"shape mismatches: {mismatched[:5]}"
            )
        if not to_load:
            raise ValueError(
                f"no tensor of STDC checkpoint {path!r} matched the backbone "
                f"(layers={self.layers}); is it an STDC ImageNet checkpoint?"
            )
        self.load_state_dict(to_load, strict=False)
        report.matched = sorted(to_load)
        # Old checkpoints lack BN step counters; they carry no weights, so don't report them.
        report.missing = sorted(
            k for k in own if k not in to_load and not k.endswith("num_batches_tracked")
        )
        return report


def stdc1(**kwargs: int) -> STDCNet:
    """STDC1 / "STDCNet813": stage depths (2, 2, 2)."""
    return STDCNet(layers=(2, 2, 2), **kwargs)


def stdc2(**kwargs: int) -> STDCNet:
    """STDC2 / "STDCNet1446": stage depths (4, 5, 3)."""
    return STDCNet(layers=(4, 5, 3), **kwargs)


STDC_BUILDERS = {"stdc1": stdc1, "stdc2": stdc2}
