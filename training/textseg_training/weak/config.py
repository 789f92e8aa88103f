"""The weak mode's experiment config: one YAML mapped onto this dataclass (unknown keys are
errors). `textseg-train train CONFIG` runs it when its `stage` is one of WEAK_STAGES."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from textseg_training.config_keys import check_known_keys
from textseg_training.trainer.config import read_yaml_with_overrides
from textseg_training.weak.pseudo import PseudoLabelSettings

# weak: pseudo labels from tile tags; weak_full: the same tower, decoder and schedule on pixel
# labels (the upper bound).
WEAK_STAGES = ("weak", "weak_full")
TEXT_CONTROLS = ("none", "random_text")
PSEUDO_VARIANTS = ("cam", "cam+affinity", "cam+affinity+par")


@dataclass
class WeakConfig:
    stage: str = "weak"
    tower: str = "efficientnet_lite0"  # efficientnet_lite0/1/2 | clip-vit-b16
    tower_weights: str | None = None  # clip-vit-b16: the ViT-B-16.pt file
    allow_random_tower: bool = False  # clip-vit-b16 without weights (tests only)
    text_encoder: str = "minilm-l6-v2"  # minilm-l6-v2 | clip (the CLIP tower's own text)
    text_template: str = "a clean origami {}."  # clip text only (WeCLIP's template)
    text_control: str = "none"  # none | random_text: fixed random unit vectors instead
    data_root: str = "../shared/datasets/camvid"
    tags_file: str = "runs/weak/camvid_tags_3x4.npz"  # made by `textseg-train weak-tags`
    shuffle_tags_seed: int | None = None  # the floor: tag sets permuted across tiles
    tag_head_steps: int = 300
    tag_head_lr: float = 1e-3
    # Which pseudo labels train the decoder; the sweep chose CAM + affinity (PAR lowered the
    # labelled pixels' quality at 3x4: docs/weak_supervision.md).
    pseudo_variant: str = "cam+affinity"
    pseudo: dict[str, Any] = field(default_factory=dict)  # PseudoLabelSettings overrides
    decoder_width: int = 256
    decoder_layers: int = 3
    decoder_heads: int = 8
    rfm: bool = True
    rfm_start: float = 0.5  # fraction of the iterations (WeCLIP: half-way)
    rfm_levels: int = 6  # the last N levels' attentions are the RFM's candidates (blocks 7-12)
    affinity_loss_weight: float = 0.1
    affinity_radius: int = 5  # cells at stride 16
    iterations: int = 1500
    batch_size: int = 4
    crop_size: tuple[int, int] = (320, 320)
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_iterations: int = 50
    poly_power: float = 0.9
    checkpoint_interval: int = 100
    log_interval: int = 20
    val_limit: int | None = None  # evaluate on the first N val frames only (tests)
    pseudo_eval_frames: int = 40  # train frames whose pseudo labels are scored (RFM start, end)
    num_workers: int = 2
    seed: int = 0
    output_dir: str = "runs/weak/weak_weclip"

    def __post_init__(self) -> None:
        self.crop_size = tuple(int(v) for v in self.crop_size)
        self.scales = tuple(float(v) for v in self.scales)
        problems = []
        if self.stage not in WEAK_STAGES:
            problems.append(f"stage '{self.stage}' is not one of {WEAK_STAGES}")
        if self.text_control not in TEXT_CONTROLS:
            problems.append(f"text_control '{self.text_control}' is not one of {TEXT_CONTROLS}")
        if self.pseudo_variant not in PSEUDO_VARIANTS:
            problems.append(f"pseudo_variant '{self.pseudo_variant}' is not one of "
                            f"{PSEUDO_VARIANTS}")
        if self.text_encoder == "clip" and not self.tower.startswith("clip"):
            problems.append("text_encoder 'clip' needs the clip-vit-b16 tower")
        if not 0.0 <= self.rfm_start <= 1.0:
            problems.append(f"rfm_start must be a fraction in [0, 1], got {self.rfm_start}")
        for name in ("iterations", "batch_size", "checkpoint_interval", "log_interval"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if len(self.crop_size) != 2 or min(self.crop_size) < 32:
            problems.append(f"crop_size {self.crop_size} must be (h, w), each >= 32")
        try:
            self.pseudo_settings()
        except TypeError as exc:
            problems.append(f"pseudo: {exc}")
        if problems:
            raise ValueError("invalid weak config: " + "; ".join(problems))

    def pseudo_settings(self) -> PseudoLabelSettings:
        known = {f.name for f in fields(PseudoLabelSettings)}
        unknown = sorted(set(self.pseudo) - known)
        if unknown:
            raise TypeError(f"unknown settings {unknown} (known: {sorted(known)})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.pseudo.items()}
        return replace(PseudoLabelSettings(), **values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["crop_size"], data["scales"] = list(self.crop_size), list(self.scales)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> WeakConfig:
        return cls(**check_known_keys(cls, data, source))

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> WeakConfig:
        data = read_yaml_with_overrides(path, overrides)
        return cls.from_dict(data, source=str(path))

