"""Pixel-adaptive refinement (PAR): label scores smoothed along the image's colours.

Each pixel repeatedly takes the affinity-weighted mean of its neighbours on rings of several
dilations; the affinity is a softmax over the neighbours of the negative squared colour
distance (in units of the local colour spread), plus a small term for spatial closeness. As
published with WeCLIP (dilations 1, 2, 4, 8, 12, 24; 20 iterations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


class PixelAdaptiveRefinement(nn.Module):
    def __init__(self, dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24), iterations: int = 20,
                 colour_weight: float = 0.3, position_weight: float = 0.01) -> None:
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        self.iterations = iterations
        self.colour_weight = colour_weight
        self.position_weight = position_weight
        distances = [((dy * d) ** 2 + (dx * d) ** 2) ** 0.5
                     for d in self.dilations for dy, dx in _OFFSETS]
        self.register_buffer("distance", torch.tensor(distances).view(1, 1, -1, 1, 1))

    def neighbours(self, x: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, C, 8 * len(dilations), H, W] (borders replicated)."""
        pad = max(self.dilations)
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        height, width = x.shape[-2:]
        shifted = [padded[..., pad + dy * d: pad + dy * d + height,
                          pad + dx * d: pad + dx * d + width]
                   for d in self.dilations for dy, dx in _OFFSETS]
        return torch.stack(shifted, dim=2)

    def affinity(self, image: Tensor) -> Tensor:
        """[N, 1, S, H, W] weights over the S neighbours of every pixel (they sum to 1 + w)."""
        around = self.neighbours(image)
        spread = around.std(dim=2, keepdim=True)
        colour = -((around - image.unsqueeze(2)).abs() / (spread + 1e-8)
                   / self.colour_weight) ** 2
        colour = colour.mean(dim=1, keepdim=True)
        position = -(self.distance / (self.distance.std() + 1e-8) / self.colour_weight) ** 2
        return (torch.softmax(colour, dim=2)
                + self.position_weight * torch.softmax(position, dim=2))

    @torch.no_grad()
    def forward(self, image: Tensor, scores: Tensor) -> Tensor:
        """image [N, 3, H, W] (any scale), scores [N, K, H, W] -> refined scores, same shape."""
        if image.shape[-2:] != scores.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape[-2:])} and scores "
                             f"{tuple(scores.shape[-2:])} differ in size")
        weights = self.affinity(image.float()).unbind(dim=2)
        scores = scores.float()
        pad = max(self.dilations)
        height, width = scores.shape[-2:]
        shifts = [(pad + dy * d, pad + dx * d) for d in self.dilations for dy, dx in _OFFSETS]
        for _ in range(self.iterations):
            # One neighbour at a time: the stacked [N, K, S, H, W] tensor is large.
            padded = F.pad(scores, (pad, pad, pad, pad), mode="replicate")
            total = torch.zeros_like(scores)
            for weight, (top, left) in zip(weights, shifts, strict=True):
                total += padded[..., top:top + height, left:left + width] * weight
            scores = total
        return scores
