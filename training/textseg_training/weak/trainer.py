"""Training from tile tags (WeCLIP offline): the tag head once, then the decoder on pseudo labels
computed every step from the augmented batch, corrected by the RFM from `rfm_start` on.

Stage `weak_full` trains the same tower, decoder and schedule on the pixel labels instead: the
upper bound. Everything a run needs comes from one WeakConfig; there is no global state.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from textseg_training.dataset_specs import CAMVID
from textseg_training.trainer.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from textseg_training.trainer.result import TrainResult
from textseg_training.trainer.schedule import build_scheduler
from textseg_training.weak.affinity import cosine_attention, transition_matrix
from textseg_training.weak.cam import TagHead, pool_tiles, train_tag_head
from textseg_training.weak.config import WeakConfig
from textseg_training.weak.metrics import PseudoLabelScore
from textseg_training.weak.model import WeakSegModel
from textseg_training.weak.pseudo import (
    PseudoLabeler,
    affinity_transition,
    pseudo_targets,
    sample_grid,
)
from textseg_training.weak.tags import TILE_IGNORE, TagSet
from textseg_training.weak.tower import build_tower

IGNORE = 255  # loss targets: uncertain pixels, padding and void


def decoder_affinity_logits(fused: Tensor) -> Tensor:
    """[N, P, P] logits of the decoder's affinity sigmoid(F^T F), scaled by 1/sqrt(width) as
    in dot-product attention (unscaled, 256-wide features saturate the sigmoid)."""
    flat = fused.flatten(2)
    return flat.transpose(1, 2) @ flat / math.sqrt(flat.shape[1])


def rfm_transition(levels: list[Tensor], fused: Tensor, config: WeakConfig) -> Tensor:
    """WeCLIP's refinement module: of the candidate attentions keep those closest to the
    decoder's affinity (summed difference at or below the mean), average them, weight them by
    that affinity, and make the result a transition matrix."""
    settings = config.pseudo_settings()
    decoder = torch.sigmoid(decoder_affinity_logits(fused.detach().float()))
    candidates = torch.stack([cosine_attention(level, settings.attention_tau)
                              for level in levels[-config.rfm_levels:]])  # [L, N, P, P]
    distance = (candidates - decoder.unsqueeze(0)).abs().sum(dim=(-2, -1))  # [L, N]
    keep = (distance <= distance.mean(dim=0, keepdim=True)).float()[..., None, None]
    chosen = (candidates * keep).sum(0) / keep.sum(0).clamp(min=1)
    return transition_matrix(chosen * decoder, settings.sinkhorn_rounds,
                             settings.affinity_power)


def affinity_loss(logits: Tensor, cell_labels: Tensor, radius: int) -> Tensor:
    """Pairs of cells within `radius` that both have a label: same label pulled to 1, different
    pushed to 0 (the two halves weighted equally)."""
    n, h, w = cell_labels.shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    near = ((rows[:, None] - rows[None]).abs() <= radius) & \
        ((cols[:, None] - cols[None]).abs() <= radius)
    near.fill_diagonal_(False)
    labels = cell_labels.flatten(1)
    valid = (labels != IGNORE)
    pair = valid[:, :, None] & valid[:, None, :] & near.to(labels.device)
    same = labels[:, :, None] == labels[:, None, :]
    losses = []
    for target, mask in ((1.0, pair & same), (0.0, pair & ~same)):
        if mask.any():
            losses.append(F.binary_cross_entropy_with_logits(
                logits[mask], torch.full_like(logits[mask], target)))
    return sum(losses) / max(len(losses), 1) if losses else logits.sum() * 0.0


class WeakTrainer:
    def __init__(self, config: WeakConfig, resume: str | Path | None = None,
                 progress: bool = True) -> None:
        from textseg_training.data import EvalTransform, TrainTransform, camvid

        self.config = config
        self.progress = progress
        self.output_dir = Path(config.output_dir)
        torch.manual_seed(config.seed)
        self.class_names = CAMVID.class_names
        num_classes = len(self.class_names)
        tower = build_tower(config.tower, config.tower_weights, config.allow_random_tower)
        self.model = WeakSegModel(tower, num_classes, config.decoder_width,
                                  config.decoder_layers, config.decoder_heads)
        self.settings = config.pseudo_settings()
        mean, std = tower.input_mean, tower.input_std
        root = Path(config.data_root)
        train_tf = TrainTransform(config.crop_size, config.scales, mean, std,
                                  TILE_IGNORE if config.stage == "weak" else IGNORE,
                                  seed=config.seed)
        self.val_set = camvid(root, "val", EvalTransform(mean, std,
                                                         size=CAMVID.network_input_size))
        if config.val_limit is not None:
            self.val_set.pairs = self.val_set.pairs[:config.val_limit]
        self.text_identity = "none"
        self.tags: TagSet | None = None
        self.head: TagHead | None = None
        if config.stage == "weak":
            from textseg_training.weak.data import WeakTrainSet

            tags = TagSet.load(config.tags_file)
            if config.shuffle_tags_seed is not None:
                tags = tags.shuffled(config.shuffle_tags_seed)
            self.tags = tags
            self.train_set = WeakTrainSet(tags, root, train_tf)
            text = self._text_embeddings(tower)
            identity = config.tower.startswith("clip") and config.text_encoder == "clip"
            self.head = TagHead(tower.cam_channels, text, identity_map=identity)
        else:
            train = camvid(root, "train", train_tf)
            # Void becomes the loss's ignore value inside the transform's padding value.
            self.train_set = _VoidAsIgnore(train)
        params = [p for p in self.model.decoder.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr,
                                           weight_decay=config.weight_decay)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        self.scheduler = build_scheduler(self.optimizer, config.iterations,
                                         config.warmup_iterations, 0.01 * config.lr,
                                         config.lr, config.poly_power)
        self.iteration = 0
        self.step_seconds: list[float] = []
        self.pseudo_scores: dict[str, Any] = {}
        self.previous_seconds = 0.0
        self.tag_head_losses: list[float] = []
        self._masks: tuple[Any, dict[str, int]] | None = None  # train masks, for measuring
        if resume:
            self._resume(resume)
        elif self.head is not None:
            self._fit_tag_head()

    # ------------------------------------------------------------------------------ set-up
    def _text_embeddings(self, tower) -> Tensor:
        config = self.config
        names = list(self.class_names)
        if config.text_control == "random_text":
            from textseg_training.text import random_unit_embeddings

            width = 512 if config.text_encoder == "clip" else 384
            self.text_identity = f"random-unit-vectors-{width}@seed{config.seed}"
            return random_unit_embeddings(len(names), width, config.seed)
        if config.text_encoder == "clip":
            self.text_identity = f"clip-vit-b16:{tower.weights or 'random'}"
            return tower.encode_text(names, config.text_template)
        from textseg_training.text import build_text_encoder, class_embeddings

        encoder = build_text_encoder(config.text_encoder)
        self.text_identity = encoder.identity
        return class_embeddings(encoder, names, cache_dir=self.output_dir.parent / ".text_cache")

    def _full_frame(self, index: int) -> tuple[Tensor, Tensor]:
        """A train frame at the network size, normalised, with its full-size tile ids."""
        from textseg_training.data.transforms import normalize

        image = self.train_set.load_image(index)
        height, width = CAMVID.network_input_size
        import cv2

        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        tensor = torch.from_numpy(normalize(image, np.asarray(self.model.input_mean, np.float32),
                                            np.asarray(self.model.input_std, np.float32)))
        ids = torch.from_numpy(self.tags.grid.tile_ids(height, width).astype(np.int64))
        return tensor.permute(2, 0, 1).contiguous(), ids

    def _fit_tag_head(self) -> None:
        """The map into the text space, on every tagged tile of the train frames (full frames,
        no augmentation), then frozen: CLIP's joint space, here learned from the tags."""
        tiles = self.tags.grid.tiles
        pooled = []
        for index in tqdm(range(len(self.train_set)), desc="tag head features",
                          disable=not self.progress):
            image, ids = self._full_frame(index)
            with torch.no_grad():
                features = self.model.tower(image[None]).cam_features
            cells = sample_grid(ids[None], *features.shape[-2:])
            pooled.append(pool_tiles(features, cells, tiles)[0][0])
        pooled = torch.cat(pooled)
        tags = torch.from_numpy(self.tags.tags.reshape(-1, self.tags.tags.shape[-1]))
        tagged = tags.any(dim=1)
        if self.head.proj is not None:
            self.tag_head_losses = train_tag_head(
                self.head, pooled[tagged], tags[tagged], steps=self.config.tag_head_steps,
                lr=self.config.tag_head_lr, seed=self.config.seed)
        self.head.requires_grad_(False)

    def _resume(self, path: str | Path) -> None:
        data = load_checkpoint(path)
        if data.get("kind") != "weak":
            raise ValueError(f"{path}: not a weak-mode checkpoint")
        self.model.decoder.load_state_dict(data["decoder"])
        if self.head is not None:
            self.head.load_state_dict(data["tag_head"])
            self.head.requires_grad_(False)
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.iteration = int(data["iteration"])
        self.step_seconds = list(data.get("step_seconds", []))
        self.pseudo_scores = dict(data.get("pseudo_scores", {}))
        self.previous_seconds = float(data.get("train_seconds", 0.0))
        self.tag_head_losses = list(data.get("tag_head_losses", []))
        restore_rng_state(data["rng"])
        tqdm.write(f"resumed from {path} at iteration {self.iteration}")

    # ---------------------------------------------------------------------------- training
    @property
    def rfm_active(self) -> bool:
        config = self.config
        return config.rfm and self.iteration >= int(config.rfm_start * config.iterations)

    def pseudo_labels(self, images: Tensor, tile_ids: Tensor, tags: Tensor,
                      levels: list[Tensor], cam_features: Tensor, fused: Tensor | None
                      ) -> Tensor:
        """Pseudo labels on the label grid: the frozen affinity, or the RFM once active."""
        return self._label(images, tile_ids, tags, levels, cam_features,
                           fused)[self.config.pseudo_variant]

    @torch.no_grad()
    def _label(self, images: Tensor, tile_ids: Tensor, tags: Tensor, levels: list[Tensor],
               cam_features: Tensor, fused: Tensor | None) -> dict[str, Tensor]:
        """PseudoLabeler.run for the configured variant (its labels and "cam_map")."""
        variant = self.config.pseudo_variant
        transition = None
        if variant != "cam":
            transition = (rfm_transition(levels, fused, self.config)
                          if self.rfm_active and fused is not None
                          else affinity_transition(levels, self.settings))
        return PseudoLabeler(self.head, self.settings).run(cam_features, transition, images,
                                                           tile_ids, tags, variants=(variant,))

    def train_step(self, batch: tuple[Tensor, ...]) -> dict[str, float]:
        self.model.decoder.train()
        images = batch[0]
        with torch.no_grad():
            tower_out = self.model.tower(images)
        logits, fused = self.model.decoder(tower_out.levels)
        label_h, label_w = -(-images.shape[-2] // self.settings.label_stride), \
            -(-images.shape[-1] // self.settings.label_stride)
        if self.config.stage == "weak":
            _, tile_ids, tags = batch
            labels = self.pseudo_labels(images, tile_ids, tags, tower_out.levels,
                                        tower_out.cam_features, fused)
            targets = pseudo_targets(labels, IGNORE)
        else:
            targets = sample_grid(batch[1], label_h, label_w)
        up = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear",
                           align_corners=False)
        valid = targets != IGNORE
        ce = F.cross_entropy(up, targets, ignore_index=IGNORE) if valid.any() \
            else up.sum() * 0.0
        loss, parts = ce, {"ce": ce.item(), "labelled": valid.float().mean().item()}
        if self.config.stage == "weak" and self.config.affinity_loss_weight > 0:
            cells = sample_grid(targets, *fused.shape[-2:])
            aff = affinity_loss(decoder_affinity_logits(fused), cells,
                                self.config.affinity_radius)
            loss = loss + self.config.affinity_loss_weight * aff
            parts["affinity"] = aff.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {self.iteration}")
        return {"loss": loss.item(), **parts}

    def _loader(self) -> torch.utils.data.DataLoader:
        from textseg_training.trainer.data_setup import SeededItems
        from textseg_training.trainer.sampling import ResumableSampler

        sampler = ResumableSampler(len(self.train_set), self.config.batch_size, self.iteration,
                                   self.config.iterations, self.config.seed, 0, 1)
        return torch.utils.data.DataLoader(
            SeededItems(self.train_set), batch_size=self.config.batch_size, sampler=sampler,
            num_workers=self.config.num_workers, drop_last=True)

    def fit(self) -> TrainResult:
        config = self.config
        rfm_start = int(config.rfm_start * config.iterations) if config.rfm else None
        started = time.perf_counter()
        bar = tqdm(total=config.iterations, initial=self.iteration, disable=not self.progress,
                   desc=f"{config.stage} {config.tower}", dynamic_ncols=True)
        try:
            if self.iteration == 0 and self.head is not None:
                self.pseudo_scores["start"] = self.score_pseudo_labels()
            for batch in self._loader():
                if rfm_start is not None and self.iteration == rfm_start and \
                        self.head is not None and "rfm_start" not in self.pseudo_scores:
                    self.pseudo_scores["rfm_start"] = self.score_pseudo_labels()
                step_started = time.perf_counter()
                values = self.train_step(batch)
                self.step_seconds.append(time.perf_counter() - step_started)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.3f}",
                                labelled=f"{values['labelled']:.2f}")
                if self.iteration % config.checkpoint_interval == 0 or \
                        self.iteration == config.iterations:
                    if self.iteration == config.iterations and self.head is not None:
                        self.pseudo_scores["end"] = self.score_pseudo_labels()
                    self.save(self.output_dir / "last.pt", started)
        finally:
            bar.close()
        result = self.evaluate()
        self.save(self.output_dir / "last.pt", started)
        elapsed = time.perf_counter() - started
        steps = len(self.step_seconds)
        return TrainResult(self.output_dir, self.iteration, 100.0 * result.miou,
                           self.output_dir / "last.pt",
                           steps * config.batch_size / elapsed if elapsed > 0 else 0.0,
                           final_eval=result, wall_seconds=self.previous_seconds + elapsed,
                           final_evals={"val": result})

    # -------------------------------------------------------------------------- measuring
    @torch.no_grad()
    def evaluate(self) -> Any:
        from textseg_training.evaluation import evaluate

        self.model.decoder.eval()
        loader = torch.utils.data.DataLoader(self.val_set, batch_size=2, num_workers=0)

        def model_fn(images: Tensor) -> Tensor:
            out = self.model.tower(images)
            return self.model.decoder(out.levels)[0]

        return evaluate(model_fn, loader, len(self.class_names), CAMVID.ignore_index,
                        progress=self.progress)

    @torch.no_grad()
    def frame_maps(self, index: int) -> dict[str, np.ndarray]:
        """For train frame `index` at the network size: its CAMs [K, h, w], its pseudo labels
        on the label grid (the RFM's once active) and the decoder's prediction [H, W]."""
        self.model.decoder.eval()
        image, ids = self._full_frame(index)
        out = self.model.tower(image[None])
        logits, fused = self.model.decoder(out.levels)
        tags = torch.from_numpy(self.tags.tags[index]).float()[None]
        maps = self._label(image[None], ids[None], tags, out.levels, out.cam_features, fused)
        prediction = F.interpolate(logits, size=image.shape[-2:], mode="bilinear",
                                   align_corners=False).argmax(1)[0]
        return {"cam": maps["cam_map"][0].numpy(),
                "pseudo": maps[self.config.pseudo_variant][0].numpy(),
                "prediction": prediction.numpy()}

    @torch.no_grad()
    def score_pseudo_labels(self) -> dict[str, Any]:
        """The current pseudo labels of `pseudo_eval_frames` train frames against their masks
        (measuring only: the masks never reach training)."""
        from textseg_training.data.transforms import resize_label

        count = min(self.config.pseudo_eval_frames, len(self.train_set))
        if count == 0:
            return {}
        score = PseudoLabelScore(len(self.class_names), CAMVID.ignore_index)
        for index in np.linspace(0, len(self.train_set) - 1, count).round().astype(int):
            labels = self.frame_maps(int(index))["pseudo"]
            mask = self.train_mask(int(index))
            score.update(labels, resize_label(mask, *labels.shape))
        summary = score.summary(self.class_names)
        summary["frames"], summary["iteration"] = count, self.iteration
        summary["affinity"] = "rfm" if self.rfm_active else "frozen"
        return summary

    def train_mask(self, index: int) -> np.ndarray:
        """The mask of train frame `index`, for measuring and pictures only (never training)."""
        from textseg_training.data import camvid

        if self._masks is None:
            masks = camvid(Path(self.config.data_root), "train")
            self._masks = (masks, {str(Path(image).resolve()): i
                                   for i, (image, _) in enumerate(masks.pairs)})
        masks, by_path = self._masks
        return masks.load_raw(by_path[str(self.train_set.paths[index].resolve())])[1]

    # ------------------------------------------------------------------------- checkpoints
    def save(self, path: Path, started: float) -> None:
        seconds = self.previous_seconds + time.perf_counter() - started
        save_checkpoint(path, {
            "kind": "weak", "config": self.config.to_dict(),
            "decoder": self.model.decoder.state_dict(),
            "tag_head": None if self.head is None else self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration, "rng": rng_state(), "step_seconds": self.step_seconds,
            "pseudo_scores": self.pseudo_scores, "train_seconds": seconds,
            "tag_head_losses": self.tag_head_losses, "text_encoder": self.text_identity,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in CAMVID.palette], "dataset": CAMVID.name,
            "network_input_size": list(CAMVID.network_input_size)})


class _VoidAsIgnore(torch.utils.data.Dataset):
    """CamVid with its void id (11) mapped to the loss's ignore value, for `weak_full`."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.transform = dataset.transform  # reseeded per worker by the loader helpers

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.dataset[index]
        return image, torch.where(label == CAMVID.ignore_index, IGNORE, label)
