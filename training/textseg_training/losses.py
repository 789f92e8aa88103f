"""Training losses: OHEM cross-entropy, STDC detail loss, and their weighted combination.

    total = L_seg(out) + w_aux * (L(aux16) + L(aux32)) + w_text * L(score / tau)
            + w_detail * L_detail(detail)

Every segmentation term is OHEM cross-entropy on logits bilinearly upsampled to the label size.
L_text may instead be taken on every `text_loss_stride`-th label pixel (the centre of each
stride x stride block), with the score map interpolated exactly at those pixels: the same loss
restricted to a regular subset of pixels, 1/stride^2 of the work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def upsample_to(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear upsampling to (H, W); a no-op when already that size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def bilinear_matrix(n_in: int, n_out: int, stride: int = 1) -> Tensor:
    """[ceil(n_out/stride), n_in] weights of 1-D bilinear upsampling from n_in to n_out samples
    (align_corners=False, as F.interpolate), keeping only outputs stride//2, stride//2+stride..
    """
    out = torch.arange(stride // 2, n_out, stride, dtype=torch.float64)
    src = ((out + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    low = src.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    frac = src - low
    rows = torch.arange(len(out))
    weights = torch.zeros(len(out), n_in, dtype=torch.float64)
    weights.index_put_((rows, low), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights.float()


def upsample_strided(logits: Tensor, size: tuple[int, int] | torch.Size,
                     stride: int) -> Tensor:
    """`upsample_to(logits, size)[..., s//2::s, s//2::s]` without computing the other pixels."""
    if stride == 1:
        return upsample_to(logits, size)
    (height, width), (h, w) = tuple(size), logits.shape[-2:]
    rows = bilinear_matrix(h, height, stride).to(logits.device)
    cols = bilinear_matrix(w, width, stride).to(logits.device)
    return rows @ logits.float() @ cols.T


def subsample_labels(label: Tensor, stride: int) -> Tensor:
    """The label pixels `upsample_strided` computes logits for."""
    return label if stride == 1 else label[..., stride // 2::stride, stride // 2::stride]


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels only (online hard example mining).

    A pixel is hard when the softmax probability of its true class is below `threshold`
    (i.e. its CE exceeds -log(threshold)). The mean is taken over all hard pixels, but over at
    least n_min = N*H*W // min_kept_divisor of the highest-loss valid pixels when fewer are hard.
    Pixels labelled `ignore_index` never count. Logits and labels must have the same H, W.
    """

    def __init__(
        self, threshold: float = 0.7, min_kept_divisor: int = 16, ignore_index: int = 255,
        class_weights: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < threshold <= 1.0 or min_kept_divisor < 1:
            raise ValueError(f"bad OHEM threshold={threshold} / divisor={min_kept_divisor}")
        self.threshold = threshold
        self.loss_threshold = -math.log(threshold)
        self.min_kept_divisor = min_kept_divisor
        self.ignore_index = ignore_index
        # Per-class weights scale each kept pixel's loss; which pixels are hard is still
        # decided on the unweighted loss, so the threshold keeps its meaning.
        self.class_weights: Tensor | None
        if class_weights is not None:
            self.register_buffer("class_weights", torch.as_tensor(class_weights).float())
        else:
            self.class_weights = None

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                             "differ in size; upsample the logits first")
        loss = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index,
                               reduction="none").flatten()
        valid_loss = loss[(target != self.ignore_index).flatten()]
        if valid_loss.numel() == 0:
            # All pixels ignored: zero that still depends on the logits, so backward() works.
            return logits.sum() * 0.0
        n_min = max(1, min(target.numel() // self.min_kept_divisor, valid_loss.numel()))
        hard = valid_loss > self.loss_threshold
        if self.class_weights is None:
            if int(hard.sum()) >= n_min:
                return valid_loss[hard].mean()
            return valid_loss.topk(n_min, sorted=False).values.mean()
        valid_target = target.flatten()[(target != self.ignore_index).flatten()]
        weighted = valid_loss * self.class_weights[valid_target]
        if int(hard.sum()) >= n_min:
            return weighted[hard].mean()
        return weighted[valid_loss.topk(n_min, sorted=False).indices].mean()


def dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - Dice between sigmoid(logits) and a binary target, per sample, averaged."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.flatten(1)
    intersection = (prob * target).sum(1)
    return (1.0 - (2.0 * intersection + smooth) / (prob.sum(1) + target.sum(1) + smooth)).mean()


class DetailLoss(nn.Module):
    """STDC detail guidance: BCE-with-logits + Dice against Laplacian boundary targets.

    Targets: a 3x3 Laplacian (8 centre, -1 around) on the label map at strides 1, 2 and 4,
    clamped at 0 (so the pixel with the larger class id on each side of a boundary is marked),
    binarised (> threshold), upsampled (nearest) to full size, fused by a 1x1 conv with weights
    0.6/0.3/0.1 and binarised again. The fusion weights are an `nn.Parameter`
    as in STDC, but the hard threshold after the fusion passes no gradient to them, so in
    practice they stay at their initial values (keep them out of the optimizer).
    """

    def __init__(self, threshold: float = 0.1, ignore_index: int | None = None) -> None:
        super().__init__()
        self.threshold = threshold
        self.ignore_index = ignore_index
        laplacian = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])
        self.register_buffer("laplacian", laplacian.reshape(1, 1, 3, 3), persistent=False)
        self.fuse = nn.Parameter(torch.tensor([0.6, 0.3, 0.1]).reshape(1, 3, 1, 1))

    @torch.no_grad()
    def targets(self, label: Tensor) -> Tensor:
        """Binary boundary map float [N,1,H,W] from a label map int [N,H,W]."""
        size = label.shape[-2:]
        with torch.autocast(device_type=label.device.type, enabled=False):
            # Replicate padding (the official code pads with 0): the image border is not a
            # class boundary, so it must not become a detail target for classes with id > 0.
            lab = F.pad(label.unsqueeze(1).float(), (1, 1, 1, 1), mode="replicate")
            maps = []
            for stride in (1, 2, 4):
                edge = F.conv2d(lab, self.laplacian, stride=stride).clamp_(min=0)
                if stride > 1:
                    edge = F.interpolate(edge, size=size, mode="nearest")
                maps.append((edge > self.threshold).float())
            # The 1x1 fusion conv written out: a 3-to-1-channel conv is the slowest step on a
            # CPU (77 of ~200 ms per batch of 8 at 288x384); the sums of binary maps are the
            # same, so the targets are identical (tested against the conv).
            weights = self.fuse.detach().float().flatten()
            fused = maps[0] * weights[0] + maps[1] * weights[1] + maps[2] * weights[2]
            target = (fused > self.threshold).float()
        if self.ignore_index is not None:
            # Ignore pixels are treated as non-boundary (no separate mask in BCE / Dice): void
            # regions are unannotated, so edges inside or on them are not trusted.
            target[(label == self.ignore_index).unsqueeze(1)] = 0.0
        return target

    def forward(self, detail_logits: Tensor, label: Tensor) -> Tensor:
        logits = upsample_to(detail_logits, label.shape[-2:]).float()
        target = self.targets(label)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + dice_loss(logits, target, smooth=1.0)


def enet_class_weights(class_pixels: Tensor, c: float = 1.02) -> Tensor:
    """ENet's class weights 1 / ln(c + p_k) from per-class pixel counts, normalised to mean 1
    (a class absent from the counts gets the largest weight, 1 / ln(c))."""
    counts = torch.as_tensor(class_pixels, dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"class pixel counts must be a non-empty, non-negative 1-D tensor with "
                         f"some pixels, got {counts.tolist()}")
    weights = 1.0 / torch.log(c + counts / counts.sum())
    return (weights / weights.mean()).float()


class SegmentationLoss(nn.Module):
    """The paper's total loss over the model's training output dict.

    Expected keys: "out" [N,K,H/8,W/8], "aux16" [N,K,H/8,W/8], "aux32" [N,K,H/16,W/16],
    "detail" [N,1,H/8,W/8], optionally "score" [N,K,H/32,W/32] (cosine similarities; divided by
    `tau` before the CE). A term whose weight is 0 is skipped and its key may be absent.
    `text_loss_stride` > 1 takes L_text on every stride-th label pixel only (see the module
    docstring); 1 is the paper's label-size loss.

    Returns (total, components) where components holds the unweighted float values of
    "seg", "aux16", "aux32", "text" (only with "score"), "detail", and the weighted "total".
    """

    def __init__(
        self,
        ignore_index: int,
        w_aux: float = 1.0,
        w_text: float = 1.0,
        w_detail: float = 1.0,
        tau: float = 0.07,
        ohem_threshold: float = 0.7,
        min_kept_divisor: int = 16,
        text_loss_stride: int = 1,
        class_weights: Tensor | None = None,
    ) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if text_loss_stride < 1:
            raise ValueError(f"text_loss_stride must be >= 1, got {text_loss_stride}")
        self.text_loss_stride = text_loss_stride
        self.w_aux, self.w_text, self.w_detail, self.tau = w_aux, w_text, w_detail, tau
        self.ohem = OhemCrossEntropy(ohem_threshold, min_kept_divisor, ignore_index)
        # The prediction and auxiliary heads may weight classes; the text loss does not.
        self.seg_ohem = self.ohem if class_weights is None else OhemCrossEntropy(
            ohem_threshold, min_kept_divisor, ignore_index, class_weights)
        self.detail = DetailLoss(ignore_index=ignore_index)

    def _ohem(self, logits: Tensor, label: Tensor) -> Tensor:
        return self.seg_ohem(upsample_to(logits, label.shape[-2:]), label)

    def forward(
        self, outputs: Mapping[str, Tensor], label: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        terms: list[tuple[str, float, Tensor]] = []

        def need(key: str) -> Tensor:
            if key not in outputs:
                raise KeyError(f"model output has no {key!r} (keys: {sorted(outputs)}); set its "
                               "weight to 0 to train without it")
            return outputs[key]

        terms.append(("seg", 1.0, self._ohem(need("out"), label)))
        if self.w_aux:
            terms.append(("aux16", self.w_aux, self._ohem(need("aux16"), label)))
            terms.append(("aux32", self.w_aux, self._ohem(need("aux32"), label)))
        if self.w_text and "score" in outputs:
            stride = self.text_loss_stride
            logits = upsample_strided(outputs["score"] / self.tau, label.shape[-2:], stride)
            terms.append(("text", self.w_text, self.ohem(logits, subsample_labels(label, stride))))
        if self.w_detail:
            terms.append(("detail", self.w_detail, self.detail(need("detail"), label)))

        total = terms[0][2]
        for _, weight, value in terms[1:]:
            total = total + weight * value
        components = {name: float(value.detach()) for name, _, value in terms}
        components["total"] = float(total.detach())
        return total, components
