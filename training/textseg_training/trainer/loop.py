"""The training loop for every stage of the method.

  baseline  STDC-Seg alone (no text)
  stage1    + Textual Guidance Module with fixed class-name embeddings (computed once, cached)
  stage2    backbone frozen (weights and BN statistics); class-specific prompts learned through
            the frozen text encoder, which runs every step; the segmentation head keeps
            training so it can follow the moving embeddings
  e2e       prompts, backbone and head together from the start (the paper's ablation)

Everything a run needs is built here from one TrainConfig; there is no global state.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from textseg_training.model import SegModelConfig, build_model
from textseg_training.trainer.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from textseg_training.trainer.config import TrainConfig
from textseg_training.trainer.distributed import (
    DistributedContext,
    cleanup_distributed,
    setup_distributed,
)
from textseg_training.trainer.ema import WeightAverage
from textseg_training.trainer.logging import RunLog
from textseg_training.trainer.precision import resolve_precision
from textseg_training.trainer.result import TrainResult
from textseg_training.trainer.sampling import ResumableSampler
from textseg_training.trainer.schedule import build_scheduler
from textseg_training.trainer.text_setup import build_text_side

# The official STDC ImageNet checkpoints, by backbone (named in the refusal to train without).
STDC_IMAGENET_FILES = {"stdc1": "STDCNet813M_73.91.tar", "stdc2": "STDCNet1446_76.47.tar"}


class Trainer:
    def __init__(self, config: TrainConfig, resume: str | Path | None = None,
                 device: str = "auto", progress: bool = True) -> None:
        from textseg_training.losses import SegmentationLoss
        from textseg_training.trainer.data_setup import build_datasets, dataset_spec

        self.config = config
        self.dist: DistributedContext = setup_distributed(device)
        self.device = self.dist.device
        # batch_size is the global batch, as in the paper; each process takes its share.
        world = self.dist.world_size
        if config.batch_size % world or config.batch_size // world < 2:
            raise ValueError(
                f"batch_size {config.batch_size} is the global batch: it must split evenly "
                f"over the {world} processes, at least 2 each (BatchNorm after global pooling)")
        self.process_batch_size = config.batch_size // world
        self.output_dir = Path(config.output_dir)
        self.progress = progress and self.dist.is_main
        torch.manual_seed(config.seed)

        self.spec = dataset_spec(config)
        self.class_names = tuple(self.spec.class_names)
        num_classes = len(self.class_names)

        # Text side: the encoder is only kept when prompts are learned (stage 2, e2e).
        text = build_text_side(config, self.class_names, self.device,
                               cache_dir=self.output_dir.parent / ".text_cache")
        self.text_encoder, self.prompt_learner = text.encoder, text.prompt_learner
        self.text_identity, text_width, fixed = text.identity, text.width, text.fixed_embeddings

        self.model_config = SegModelConfig(backbone=config.backbone, num_classes=num_classes,
                                           text_width=text_width,
                                           text_fusion=config.text_fusion,
                                           bridge_layers=config.bridge_layers,
                                           bridge_width=config.bridge_width)
        model = build_model(self.model_config)
        if not (config.init_from or resume):
            self._load_backbone_weights(model)
        if config.uses_text and not config.learns_prompts:
            model.set_text_embeddings(fixed)
        # Normalisation constants come from the backbone: one place, exported with the model.
        self.train_set, self.eval_sets, _ = build_datasets(
            config, model.backbone.input_mean, model.backbone.input_std)
        self.val_set = self.eval_sets["val"]
        if config.init_from:
            self._init_from(model, config.init_from)
        if config.stage == "stage2" and self.prompt_learner is not None:
            self._say(self._continuity(model))
        if config.stage == "stage2":
            if config.stage2_trains == "prompts":
                model.freeze_all()
            else:
                model.freeze_backbone()
                if config.stage2_trains == "heads":
                    model.freeze_text_projection()
            if self.dist.enabled and config.stage2_trains == "prompts":
                raise ValueError("stage2_trains 'prompts' runs in one process: the model has "
                                 "nothing for DistributedDataParallel to train")
        self.model = model.to(self.device)
        self.train_module: nn.Module = self.model
        self.prompt_module: nn.Module | None = self.prompt_learner
        if self.dist.enabled:
            if self.device.type == "cuda":
                # BN statistics over the global batch, as the authors trained (2 GPUs).
                # PyTorch's SyncBatchNorm is GPU-only: CPU (gloo) runs keep per-process BN.
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.train_module = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            if self.prompt_learner is not None:
                # The prompts live outside the segmentation model: their gradients need their
                # own all-reduce, which wrapping them in DDP provides.
                self.prompt_module = nn.parallel.DistributedDataParallel(
                    self.prompt_learner, device_ids=ids)

        self.criterion = SegmentationLoss(
            ignore_index=self.spec.ignore_index, ohem_threshold=config.ohem_threshold,
            w_aux=config.aux_weight, w_text=config.text_weight,
            # Stage 2 freezes the detail head with the backbone (freeze_backbone): no loss.
            w_detail=0.0 if config.stage == "stage2" else config.detail_weight,
            tau=config.text_temperature,
            text_loss_stride=config.resolved_text_loss_stride(self.device.type),
            class_weights=self._class_weights(),
        ).to(self.device)
        self.optimizer = torch.optim.SGD(self._param_groups(), lr=config.lr,
                                         momentum=config.momentum)
        self.scheduler = build_scheduler(self.optimizer, config.iterations,
                                         config.warmup_iterations, config.warmup_start_lr,
                                         config.lr, config.poly_power)
        self.precision = resolve_precision(config.precision, self.device)
        self.memory_format = (torch.channels_last if config.channels_last
                              else torch.contiguous_format)
        self.model.to(memory_format=self.memory_format)
        self.ema = WeightAverage(self.model, config.ema_decay) if config.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.uses_grad_scaler)
        self.iteration = 0
        self.best_miou: float | None = None
        self.last_eval: Any = None
        self.previous_train_seconds: float | None = 0.0  # wall time before this invocation
        # Precisions the run's training steps used, across resumes (None: not recorded by the
        # checkpoint it resumed, which predates the record).
        self.trained_precisions: list[str] | None = []
        self._fit_started: float | None = None
        self.last_evals: dict[str, Any] = {}
        self.log = RunLog(self.output_dir, enabled=self.dist.is_main)
        self._say(f"precision {self.precision.name} on {self.device.type}"
                  f"{' (auto)' if config.precision == 'auto' else ''}, "
                  f"{'channels_last' if config.channels_last else 'NCHW'}")
        if resume:
            self._resume(resume)
        self._set_backbone_probe()

    # ----------------------------------------------------------------------------- set-up
    def _say(self, text: str) -> None:
        if self.dist.is_main:
            tqdm.write(text)

    def _class_weights(self) -> torch.Tensor | None:
        """ENet weights from the training split's pixel shares (class_weights: enet)."""
        if self.config.class_weights == "none":
            return None
        from textseg_training.data import validate_dataset
        from textseg_training.losses import enet_class_weights

        report = validate_dataset(self.train_set, raise_on_error=True)
        weights = enet_class_weights(torch.from_numpy(report.class_pixels))
        self._say("class weights (enet): " + ", ".join(
            f"{name} {w:.2f}" for name, w in zip(self.class_names, weights.tolist(),
                                                 strict=True)))
        return weights

    def _set_backbone_probe(self) -> None:
        """Backbone frozen (and no detail loss) while iteration < backbone_frozen_iterations:
        the linear probe before the fine-tune."""
        if not self.config.backbone_frozen_iterations or self.config.stage == "stage2":
            return
        probing = self.iteration < self.config.backbone_frozen_iterations
        if probing != self.model.backbone_frozen:
            self.model.freeze_backbone(probing)
        self.criterion.w_detail = 0.0 if probing else self.config.detail_weight

    def _param_groups(self) -> list[dict[str, Any]]:
        groups = self.model.param_groups(self.config.lr, self.config.weight_decay,
                                         self.config.head_lr_mult,
                                         self.config.backbone_lr_mult)
        if self.prompt_learner is not None:
            groups.append({"name": "prompts", "params": list(self.prompt_learner.parameters()),
                           "lr": self.config.lr * self.config.prompt_lr_mult,
                           "weight_decay": self.config.prompt_weight_decay})
        for group in groups:
            group["initial_lr"] = group["lr"]
        return groups

    def _continuity(self, model: nn.Module) -> str:
        """Whether stage 2's prompts start from the embeddings stage 1 trained on."""
        ended = getattr(model.tgm, "text_embeddings", None)
        if ended is None:
            return "stage 2: no stage-1 embeddings to compare the prompts with"
        with torch.no_grad():
            start = self.prompt_learner().float().cpu()
        cosine = torch.nn.functional.cosine_similarity(start, ended.float().cpu(), dim=1)
        if torch.allclose(start, ended.float().cpu(), atol=1e-5):
            return "stage 2 starts where stage 1 ended (the prompts' initial embeddings)"
        return (f"stage 2's initial prompts are not stage 1's embeddings (cosine per class "
                f"{cosine.min().item():.3f}-{cosine.max().item():.3f}): the head re-adapts "
                "first (train stage 1 with stage1_text: initial_prompts to avoid it)")

    def _load_backbone_weights(self, model: nn.Module) -> None:
        """ImageNet weights: the given file, else the backbone's shipped ones, if it has any."""
        weights = self.config.backbone_weights
        if weights is None and self.config.backbone.startswith("stdc"):
            if not self.config.allow_random_backbone:
                official = STDC_IMAGENET_FILES.get(self.config.backbone, "the official file")
                raise ValueError(
                    f"backbone {self.config.backbone} has no ImageNet weights here: pass the "
                    f"official STDC ImageNet checkpoint {official} (backbone_weights: PATH in "
                    "the config, or --backbone-weights PATH), or set allow_random_backbone: "
                    "true to train from random initialisation on purpose")
            self._say("note: allow_random_backbone is set; the STDC backbone starts from "
                      "random initialisation")
            return
        report = model.backbone.load_pretrained(weights)
        self._say(f"backbone weights: {report.summary()}")

    def _init_from(self, model: nn.Module, path: str) -> None:
        """Start from another run's weights (stage 2 from stage 1); shapes must agree, and a
        text model must come from the same text encoder (same weights) as this run's."""
        data = load_checkpoint(path)
        theirs = data.get("text_encoder", "none")
        if self.config.uses_text and theirs != "none" and theirs != self.text_identity:
            raise ValueError(
                f"{path}: trained with text encoder {theirs}, but this run uses "
                f"{self.text_identity}; stage 2 must tune prompts through the encoder whose "
                "embeddings stage 1 was aligned with (set text_encoder / text_weights to match)")
        state = data["model"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Stage-1 embeddings are replaced by the prompts' output; nothing else may differ.
        allowed = {"tgm.text_embeddings"}
        problems = [k for k in list(missing) + list(unexpected) if k not in allowed]
        if problems:
            raise ValueError(f"{path}: does not fit this model (stage {self.config.stage}, "
                             f"backbone {self.config.backbone}): {problems[:8]}")
        self._say(f"initialised from {path} (iteration {data.get('iteration')}, "
                  f"stage {data.get('config', {}).get('stage')})")

    def _resume(self, path: str | Path) -> None:
        data = load_checkpoint(path)
        # Compared as configs: a checkpoint from before a new field takes its default.
        if SegModelConfig.from_dict(data["model_config"]) != self.model_config:
            raise ValueError(f"{path}: model {data['model_config']} differs from this run's "
                             f"{self.model_config.to_dict()}")
        self.model.load_state_dict(data["model"])
        if self.prompt_learner is not None:
            self.prompt_learner.load_state_dict(data["prompt_learner"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if data["scaler"]:  # empty when the checkpoint was written without loss scaling
            self.scaler.load_state_dict(data["scaler"])
        self.criterion.load_state_dict(data["criterion"])
        if self.ema is not None:
            if not data.get("ema"):
                raise ValueError(f"{path}: has no weight average, but this run sets ema_decay")
            self.ema.load_state_dict(data["ema"])
        self.iteration = int(data["iteration"])
        self.best_miou = data.get("best_miou")
        self.log.restore(data.get("log_rows", []))
        # None when the checkpoint predates this record: the total is then unknown.
        self.previous_train_seconds = data.get("train_seconds")
        self.trained_precisions = data.get("trained_precisions")
        restore_rng_state(data["rng"])
        self._say(f"resumed from {path} at iteration {self.iteration}")

    # ------------------------------------------------------------------------- training
    def _loader(self) -> torch.utils.data.DataLoader:
        from textseg_training.trainer.data_setup import SeededItems

        sampler = ResumableSampler(len(self.train_set), self.process_batch_size,
                                   self.iteration, self.config.iterations, self.config.seed,
                                   self.dist.rank, self.dist.world_size)
        return torch.utils.data.DataLoader(
            SeededItems(self.train_set), batch_size=self.process_batch_size, sampler=sampler,
            num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
            drop_last=True, persistent_workers=False)

    def text_embeddings(self) -> torch.Tensor | None:
        """The embeddings the model sees this step (prompt learner output in stages 2 / e2e)."""
        return self.prompt_module() if self.prompt_module is not None else None

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        self._set_backbone_probe()
        self.train_module.train()
        if self.prompt_learner is not None:
            self.prompt_learner.train()
        images = images.to(self.device, non_blocking=True,
                           memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        # The prompts run through the frozen text encoder in fp32, outside the autocast.
        embeddings = self.text_embeddings()
        with self.precision.autocast():
            outputs = self.train_module(images, text_embeddings=embeddings)
        # The loss (OHEM's sort and every reduction) runs in fp32 whatever the precision.
        outputs = {key: value.float() for key, value in outputs.items()}
        loss, parts = self.criterion(outputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iteration += 1
        if self.trained_precisions is not None and \
                self.precision.name not in self.trained_precisions:
            self.trained_precisions.append(self.precision.name)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {self.iteration}")
        return {"train/loss": loss.item(), **{f"train/{k}": v for k, v in parts.items()}}

    def fit(self) -> TrainResult:
        config = self.config
        loader = self._loader()
        bar = tqdm(total=config.iterations, initial=self.iteration, disable=not self.progress,
                   desc=f"{config.stage} {config.backbone}", dynamic_ncols=True)
        started, start_iteration = time.perf_counter(), self.iteration
        self._fit_started = started
        last_checkpoint = self.output_dir / "last.pt"
        if self.iteration >= config.iterations:
            # Resuming a finished run (a re-run of a script): nothing to train, so only the
            # final evaluation is repeated, and `--resume` stays safe to pass every time.
            self._say(f"run already complete at iteration {self.iteration}; evaluating only")
            self._fit_started = None  # re-evaluating is not training: the wall time stays
            self._evaluate_and_keep_best()
        try:
            for images, labels in loader:
                values = self.train_step(images, labels)
                lr = self.optimizer.param_groups[0]["lr"]
                bar.update(1)
                bar.set_postfix(loss=f"{values['train/loss']:.3f}", lr=f"{lr:.2e}")
                if self.iteration % config.log_interval == 0:
                    self.log.log(self.iteration, {**values, "train/lr": lr})
                if self.iteration % config.eval_interval == 0 or \
                        self.iteration == config.iterations:
                    self._evaluate_and_keep_best()
                if self.iteration % config.checkpoint_interval == 0 or \
                        self.iteration == config.iterations:
                    self.save(last_checkpoint)
        finally:
            bar.close()
            self.log.plot()
            self.log.close()
        elapsed = time.perf_counter() - started
        images = (self.iteration - start_iteration) * config.batch_size  # the global batch
        result = TrainResult(self.output_dir, self.iteration, self.best_miou, last_checkpoint,
                             images / elapsed if elapsed > 0 else 0.0, self.last_eval,
                             self.train_seconds(), dict(self.last_evals))
        cleanup_distributed()
        return result

    # ---------------------------------------------------------------------- evaluation
    def finalize_text_embeddings(self) -> None:
        """Bake the prompts' current output into the model's constant embeddings."""
        if self.prompt_learner is not None:
            with torch.no_grad():
                self.model.set_text_embeddings(self.prompt_learner().float())

    def evaluate(self, split: str = "val", ema: bool = False) -> Any:
        """Metrics of the prediction on one evaluation split ("val", or "heldout" with
        train_exclude), and of the TGM's score map alone where there is one
        (result.outputs["score"]); `ema` scores the weights' moving average instead."""
        from textseg_training.evaluation import evaluate
        from textseg_training.trainer.data_setup import build_val_loader

        self.finalize_text_embeddings()
        model = self.model
        if ema:
            if self.ema is None:
                raise ValueError("evaluate(ema=True): this run keeps no average (ema_decay 0)")
            model = self.ema.model
            if self.prompt_learner is not None:  # the prompts are not averaged
                with torch.no_grad():
                    model.set_text_embeddings(self.prompt_learner().float())
        model.eval()
        loader = build_val_loader(self.eval_sets[split], self.config, self.dist)

        # Scores as the exported fp32 model computes them; only CUDA AMP keeps its autocast.
        eval_precision = self.precision if self.precision.name == "amp" else None

        def model_fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
            images = images.to(self.device, memory_format=self.memory_format)
            if eval_precision is None:
                return scored_outputs(model(images))
            with eval_precision.autocast():
                return scored_outputs(model(images))

        return evaluate(model_fn, loader, len(self.class_names), self.spec.ignore_index,
                        flip=self.config.eval_flip, scales=self.config.eval_scales,
                        device=self.device, progress=self.progress,
                        categories=getattr(self.spec, "categories", None) or None,
                        outputs=scored_output_names(model))

    def _evaluate_and_keep_best(self) -> None:
        """Every split, with the trained weights and (ema_decay) their average; best.pt
        follows val mIoU of the trained weights."""
        self.last_evals = {}
        for split in self.eval_sets:
            for ema in (False, True) if self.ema is not None else (False,):
                key = split + ("_ema" if ema else "")
                result = self.evaluate(split, ema=ema)
                self.last_evals[key] = result
                metrics = {f"{key}/miou": 100.0 * result.miou,
                           f"{key}/pixel_accuracy": 100.0 * result.pixel_accuracy}
                score = result.outputs.get("score")
                if score is not None:
                    metrics[f"{key}/score_map_miou"] = 100.0 * score.miou
                self.log.log(self.iteration, metrics)
                self._say(f"iteration {self.iteration}: {key} mIoU {100.0 * result.miou:.2f}"
                          + ("" if score is None
                             else f", score map alone {100.0 * score.miou:.2f}"))
        result = self.last_evals["val"]
        self.last_eval = result
        miou = 100.0 * result.miou
        if self.dist.is_main and (self.best_miou is None or miou > self.best_miou):
            self.best_miou = miou
            self.save(self.output_dir / "best.pt")

    # ---------------------------------------------------------------------- checkpoints
    def train_seconds(self) -> float | None:
        """Wall time of the whole run so far, across resumes (None if a part is unknown)."""
        if self.previous_train_seconds is None:
            return None
        running = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        return self.previous_train_seconds + running

    def checkpoint_payload(self) -> dict[str, Any]:
        self.finalize_text_embeddings()
        return {
            "model": self.model.state_dict(),
            "model_config": self.model_config.to_dict(),
            "prompt_learner": (self.prompt_learner.state_dict()
                               if self.prompt_learner is not None else None),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "iteration": self.iteration,
            "best_miou": self.best_miou,
            "config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.spec.palette],
            "dataset": self.spec.name,
            "network_input_size": list(self.spec.network_input_size),
            "text_encoder": self.text_identity,
            "rng": rng_state(),
            "log_rows": self.log.rows,
            "train_seconds": self.train_seconds(),
            "trained_precisions": self.trained_precisions,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def save(self, path: Path) -> None:
        if self.dist.is_main:
            save_checkpoint(path, self.checkpoint_payload())


def scored_output_names(model: nn.Module) -> tuple[str, ...]:
    """What evaluation scores for `model`: the prediction, and the score map with a TGM."""
    return ("out", "score") if getattr(model, "tgm", None) is not None else ("out",)


def scored_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The outputs evaluation scores: the prediction and, with a TGM, its cosine score map
    (argmax over the K class channels: what only the text embeddings can change)."""
    return {name: outputs[name].float() for name in ("out", "score") if name in outputs}


def train(config: TrainConfig, resume: str | Path | None = None, device: str = "auto",
          progress: bool = True) -> TrainResult:
    return Trainer(config, resume=resume, device=device, progress=progress).fit()
