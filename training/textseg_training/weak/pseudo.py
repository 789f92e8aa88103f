"""From tower features and tile tags to pseudo labels: CAM -> affinity -> PAR -> labels.

CamVid has no background class, so WeCLIP's background channel becomes an "uncertain" channel
u = 1 - max_k CAM_k: pixels it wins get no label (`UNCERTAIN`) and are ignored by the losses.
Every class map is re-masked by its tile's tags after each global step (affinity, PAR), so no
pseudo label ever lies outside its tile's tags; a tile with a single tag is filled outright.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg_training.weak.affinity import mean_attention, propagate, transition_matrix
from textseg_training.weak.cam import TagHead, cell_tags, normalise_per_tile, tile_cams
from textseg_training.weak.par import PixelAdaptiveRefinement
from textseg_training.weak.tags import TILE_IGNORE

UNCERTAIN = -1


@dataclass
class PseudoLabelSettings:
    attention_tau: float = 0.1  # temperature of the cosine attention standing in for ViT's
    affinity_levels: int = 8  # the last N tower levels averaged (WeCLIP: blocks 5-12)
    sinkhorn_rounds: int = 3
    affinity_power: int = 2
    box_threshold: float = 0.4
    par_dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24)
    par_iterations: int = 20
    label_stride: int = 4  # pseudo labels (and the loss) at 1/label_stride of the input
    # PAR on the class maps only, the uncertain channel recomputed after it (1 - max); PAR on
    # the uncertain channel too ("refine") spreads it, and coverage falls.
    par_uncertain: str = "recompute"
    # u = uncertain_scale * (1 - max CAM): 1 is WeCLIP's background; CamVid has no background
    # (every non-void pixel is some class), so a smaller scale labels more pixels.
    uncertain_scale: float = 1.0
    fill_single_tag: bool = True


def sample_grid(tile_ids: Tensor, height: int, width: int) -> Tensor:
    """Nearest sampling at cell centres of a [N, H, W] id map to [N, height, width]."""
    n, full_h, full_w = tile_ids.shape
    rows = ((torch.arange(height) + 0.5) * (full_h / height)).long().clamp(max=full_h - 1)
    cols = ((torch.arange(width) + 0.5) * (full_w / width)).long().clamp(max=full_w - 1)
    return tile_ids[:, rows.to(tile_ids.device)][:, :, cols.to(tile_ids.device)]


def affinity_transition(levels: list[Tensor], settings: PseudoLabelSettings) -> Tensor:
    """The frozen affinity's transition matrix [N, P, P] from the tower's last levels."""
    attention = mean_attention(levels[-settings.affinity_levels:], settings.attention_tau)
    return transition_matrix(attention, settings.sinkhorn_rounds, settings.affinity_power)


def refine_with(transition: Tensor, cam: Tensor, cell_ids: Tensor, tags: Tensor,
                settings: PseudoLabelSettings) -> Tensor:
    """CAM propagated through an affinity, then re-masked and normalised per tile."""
    return normalise_per_tile(propagate(transition, cam, settings.box_threshold), cell_ids, tags)


def label_scores(cam: Tensor, pixel_ids: Tensor, tags: Tensor,
                 uncertain_scale: float = 1.0) -> Tensor:
    """[N, 1 + K, H', W']: the uncertain channel then the class maps, upsampled to the
    label grid and masked by the tags of each pixel's tile."""
    up = F.interpolate(cam, size=pixel_ids.shape[-2:], mode="bilinear", align_corners=False)
    return with_uncertain(up.clamp(0, 1) * cell_tags(pixel_ids, tags), uncertain_scale)


def with_uncertain(classes: Tensor, uncertain_scale: float = 1.0) -> Tensor:
    """The class maps [N, K, H, W] preceded by the uncertain channel."""
    uncertain = uncertain_scale * (1.0 - classes.amax(dim=1, keepdim=True))
    return torch.cat([uncertain, classes], dim=1)


def labels_from_scores(scores: Tensor, pixel_ids: Tensor, tags: Tensor,
                       fill_single_tag: bool = True) -> Tensor:
    """argmax over (uncertain, classes) -> class ids, UNCERTAIN where nothing wins or the tile
    is untagged; a single-tag tile is that tag everywhere."""
    labels = scores.argmax(dim=1) - 1
    allowed = cell_tags(pixel_ids, tags)  # [N, K, H, W]
    count = allowed.sum(dim=1)
    labels = torch.where(count == 0, torch.full_like(labels, UNCERTAIN), labels)
    if fill_single_tag:
        labels = torch.where(count == 1, allowed.argmax(dim=1), labels)
    return labels


class PseudoLabeler:
    """The pipeline with its settings: `run` returns the labels of every variant asked for."""

    VARIANTS = ("cam", "cam+affinity", "cam+affinity+par")

    def __init__(self, head: TagHead, settings: PseudoLabelSettings | None = None) -> None:
        self.head = head
        self.settings = settings or PseudoLabelSettings()
        self.par = PixelAdaptiveRefinement(self.settings.par_dilations,
                                           self.settings.par_iterations)

    def label_grid(self, height: int, width: int) -> tuple[int, int]:
        stride = self.settings.label_stride
        return -(-height // stride), -(-width // stride)

    @torch.no_grad()
    def run(self, cam_features: Tensor, transition: Tensor | None, image: Tensor,
            tile_ids: Tensor, tags: Tensor, variants: tuple[str, ...] = ("cam+affinity+par",)
            ) -> dict[str, Tensor]:
        """cam_features [N, C, h, w]; transition [N, P, P] (None: CAM only); image [N, 3, H,
        W] normalised; tile_ids [N, H, W] (TILE_IGNORE on padding); tags [N, T, K].
        Returns {variant: labels [N, H', W']} on the label grid, and "scores" of the last."""
        unknown = set(variants) - set(self.VARIANTS)
        if unknown:
            raise ValueError(f"unknown pseudo-label variants {sorted(unknown)}")
        h, w = cam_features.shape[-2:]
        cell_ids = sample_grid(tile_ids, h, w)
        pixel_ids = sample_grid(tile_ids, *self.label_grid(*image.shape[-2:]))
        cam = tile_cams(self.head, cam_features, cell_ids, tags)
        out: dict[str, Tensor] = {}
        fill = self.settings.fill_single_tag
        scale = self.settings.uncertain_scale
        if "cam" in variants:
            out["cam"] = labels_from_scores(label_scores(cam, pixel_ids, tags, scale),
                                            pixel_ids, tags, fill)
        if {"cam+affinity", "cam+affinity+par"} & set(variants):
            if transition is None:
                raise ValueError("the affinity variants need the tower's transition matrix")
            refined = refine_with(transition, cam, cell_ids, tags, self.settings)
            scores = label_scores(refined, pixel_ids, tags, scale)
            if "cam+affinity" in variants:
                out["cam+affinity"] = labels_from_scores(scores, pixel_ids, tags, fill)
            if "cam+affinity+par" in variants:
                small = F.interpolate(image.float(), size=pixel_ids.shape[-2:],
                                      mode="bilinear", align_corners=False)
                if self.settings.par_uncertain == "refine":
                    scores = self.par(small, scores)
                    scores[:, 1:] = scores[:, 1:] * cell_tags(pixel_ids, tags)
                else:
                    # Smoothing lowers the peaks: normalised per tile again, as after the
                    # affinity, before the uncertain channel is recomputed.
                    classes = normalise_per_tile(self.par(small, scores[:, 1:]), pixel_ids, tags)
                    scores = with_uncertain(classes, scale)
                out["cam+affinity+par"] = labels_from_scores(scores, pixel_ids, tags, fill)
            out["scores"] = scores
        out["cam_map"] = cam
        return out


def pseudo_targets(labels: Tensor, ignore_index: int) -> Tensor:
    """Pseudo labels as loss targets: UNCERTAIN -> the ignore index."""
    return torch.where(labels == UNCERTAIN, torch.full_like(labels, ignore_index), labels)


__all__ = ["TILE_IGNORE", "UNCERTAIN", "PseudoLabelSettings", "PseudoLabeler",
           "affinity_transition", "label_scores", "labels_from_scores", "pseudo_targets",
           "refine_with", "sample_grid"]
