"""Affinity between positions, and CAM propagation through it (WeCLIP's frozen affinity).

WeCLIP averages the attention maps of CLIP's blocks; EfficientNet has no attention, so a
cosine-similarity attention between positions (softmax over cos / tau) of a tower level stands
in for each block's map. The attention is made a transition matrix (alternating column / row
normalisation, symmetrised, squared) and a CAM is propagated through it, restricted to the box
around the class's confident cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_attention(features: Tensor, tau: float = 0.1) -> Tensor:
    """[N, C, h, w] -> [N, P, P]: softmax over j of cos(f_i, f_j) / tau (rows sum to 1)."""
    flat = F.normalize(features.flatten(2).float(), dim=1)
    return torch.softmax(flat.transpose(1, 2) @ flat / tau, dim=-1)


def mean_attention(levels: list[Tensor], tau: float = 0.1) -> Tensor:
    """The average of the levels' attention maps (WeCLIP: blocks 5-12 averaged)."""
    return torch.stack([cosine_attention(level, tau) for level in levels]).mean(0)


def transition_matrix(attention: Tensor, rounds: int = 3, power: int = 2) -> Tensor:
    """Column and row normalisation, `rounds` times, symmetrised, then the matrix power."""
    matrix = attention.float()
    for _ in range(rounds):
        matrix = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1e-12)
        matrix = matrix / matrix.sum(dim=2, keepdim=True).clamp(min=1e-12)
    matrix = (matrix + matrix.transpose(1, 2)) / 2
    result = matrix
    for _ in range(power - 1):
        result = result @ matrix
    return result


def confident_boxes(cam: Tensor, threshold: float = 0.4) -> Tensor:
    """float [N, K, h, w]: 1 inside the bounding box of the cells where a class's CAM exceeds
    `threshold` of its maximum (0 everywhere for a class with an all-zero CAM)."""
    n, k, h, w = cam.shape
    peak = cam.flatten(2).amax(-1).view(n, k, 1, 1)
    confident = (cam > threshold * peak) & (peak > 0)
    rows = confident.any(dim=3)  # [N, K, h]
    cols = confident.any(dim=2)  # [N, K, w]

    def span(mask: Tensor) -> Tensor:
        # 1 between the first and last True of each line.
        forward = mask.int().cumsum(-1) > 0
        backward = mask.flip(-1).int().cumsum(-1).flip(-1) > 0
        return forward & backward

    return (span(rows).unsqueeze(-1) & span(cols).unsqueeze(-2)).float()


def propagate(transition: Tensor, cam: Tensor, box_threshold: float = 0.4) -> Tensor:
    """refined_k = T_box @ cam_k: each class spreads from the cells of its confident box only."""
    n, k, h, w = cam.shape
    sources = (cam * confident_boxes(cam, box_threshold)).flatten(2)  # [N, K, P]
    refined = torch.einsum("nij,nkj->nki", transition.float(), sources.float())
    return refined.reshape(n, k, h, w)
