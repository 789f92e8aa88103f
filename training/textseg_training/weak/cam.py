"""Tile-level class scores in the text space, and their class activation maps.

WeCLIP scores an image against the text features of its tags in CLIP's joint space and takes
GradCAM of each present class. Offline there is no joint space, so `TagHead` learns one linear
map from the tower's pooled features into the frozen class-name embeddings, trained on the tile
tags alone (multi-label BCE on cosine / tau), then frozen as CLIP is. With a pooled head,
GradCAM has a closed form (`tile_cams`), checked against autograd in the tests.

Shapes: features [N, C, h, w]; tile ids [N, h, w] (long, `TILE_IGNORE` for padding); tags
[N, T, K] (bool or 0/1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg_training.weak.tags import TILE_IGNORE


def tile_onehot(tile_ids: Tensor, tiles: int) -> Tensor:
    """float [N, T, h*w]: 1 where a cell belongs to tile t (padding belongs to none)."""
    flat = tile_ids.flatten(1).long()
    onehot = F.one_hot(flat.clamp(max=tiles), tiles + 1)[..., :tiles]
    onehot = onehot * (flat != TILE_IGNORE).unsqueeze(-1)
    return onehot.transpose(1, 2).float()


def pool_tiles(features: Tensor, tile_ids: Tensor, tiles: int) -> tuple[Tensor, Tensor]:
    """(mean feature of each tile [N, T, C], cell count of each tile [N, T])."""
    onehot = tile_onehot(tile_ids, tiles)
    counts = onehot.sum(-1)
    pooled = onehot @ features.flatten(2).transpose(1, 2).float()
    return pooled / counts.clamp(min=1).unsqueeze(-1), counts


class TagHead(nn.Module):
    """score_k(tile) = cos(W p, t_k) / tau + b: p the tile's mean feature, t_k the frozen
    embedding of class k, W the learned map into the text space, b one shared bias."""

    def __init__(self, in_channels: int, text_embeddings: Tensor, tau: float = 0.07,
                 identity_map: bool = False) -> None:
        super().__init__()
        width = text_embeddings.shape[1]
        if identity_map and in_channels != width:
            raise ValueError(f"identity_map needs features as wide as the text ({width}), "
                             f"got {in_channels}")
        # CLIP's features are already in its joint space: no map to learn (WeCLIP).
        self.proj = None if identity_map else nn.Linear(in_channels, width, bias=False)
        self.register_buffer("text", F.normalize(text_embeddings.float(), dim=1))
        self.bias = nn.Parameter(torch.zeros(()))
        self.tau = tau

    def embed(self, pooled: Tensor) -> Tensor:
        return pooled if self.proj is None else self.proj(pooled)

    def forward(self, pooled: Tensor) -> Tensor:
        """Scores [..., K] of pooled features [..., C]."""
        z = F.normalize(self.embed(pooled), dim=-1)
        return z @ self.text.T / self.tau + self.bias

    def gradcam_weights(self, pooled: Tensor) -> Tensor:
        """d score_k / d p for each tile: [N, T, K, C] (the GradCAM channel weights up to the
        positive factor 1 / cells, which the normalisation removes)."""
        z = self.embed(pooled)  # [N, T, D]
        norm = z.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        z_hat = z / norm
        cosine = z_hat @ self.text.T  # [N, T, K]
        # d cos(z, t) / dz = (t - cos * z_hat) / |z|
        grad_z = (self.text.unsqueeze(0).unsqueeze(0) - cosine.unsqueeze(-1) * z_hat.unsqueeze(2))
        grad_z = grad_z / (norm.unsqueeze(2) * self.tau)  # [N, T, K, D]
        if self.proj is None:
            return grad_z
        return grad_z @ self.proj.weight  # [N, T, K, C]


def normalise_per_tile(cam: Tensor, tile_ids: Tensor, tags: Tensor) -> Tensor:
    """Each (tile, tag) map scaled to peak 1 in its tile; classes that are not a tile's tags
    set to 0 there (an affinity is global: its output is re-masked by the tags)."""
    n, k, h, w = cam.shape
    tiles = tags.shape[1]
    onehot = tile_onehot(tile_ids, tiles)  # [N, T, P]
    flat = cam.flatten(2)  # [N, K, P]
    allowed = cell_tags(tile_ids, tags).flatten(2)  # [N, K, P]
    flat = flat.clamp(min=0) * allowed
    # Peak of each class in each tile: max over the tile's cells.
    masked = flat.unsqueeze(1) * onehot.unsqueeze(2)  # [N, T, K, P]
    peak = masked.amax(-1)  # [N, T, K]
    cell_tile = tile_ids.flatten(1).long().clamp(max=tiles - 1)  # padding masked by `allowed`
    peak_per_cell = torch.gather(peak, 1, cell_tile.unsqueeze(-1).expand(n, -1, k))
    flat = flat / peak_per_cell.transpose(1, 2).clamp(min=1e-6)
    return flat.reshape(n, k, h, w)


def cell_tags(tile_ids: Tensor, tags: Tensor) -> Tensor:
    """float [N, K, h, w]: the tags of each cell's tile (0 on padding and untagged tiles)."""
    n, tiles, k = tags.shape
    ids = tile_ids.long()
    padded = torch.cat([tags.float(), torch.zeros(n, 1, k, device=tags.device)], dim=1)
    index = torch.where(ids == TILE_IGNORE, torch.full_like(ids, tiles), ids.clamp(max=tiles))
    gathered = torch.gather(padded, 1, index.flatten(1).unsqueeze(-1).expand(-1, -1, k))
    return gathered.transpose(1, 2).reshape(n, k, *tile_ids.shape[1:])


def tile_cams(head: TagHead, features: Tensor, tile_ids: Tensor, tags: Tensor) -> Tensor:
    """GradCAM of each tile's tags, [N, K, h, w] in 0..1 (per tile and tag, peak 1).

    For a cell x of tile t and a tag k of t: ReLU(g_tk . f(x)), g_tk = d score_k / d p_t.
    """
    tiles = tags.shape[1]
    features = features.float()
    pooled, _ = pool_tiles(features, tile_ids, tiles)
    weights = head.gradcam_weights(pooled)  # [N, T, K, C]
    n, c, h, w = features.shape
    # Each cell takes the weights of its own tile.
    ids = tile_ids.flatten(1).long().clamp(max=tiles - 1)  # [N, P]
    flat = features.flatten(2)  # [N, C, P]
    per_tile = torch.einsum("ntkc,ncp->ntkp", weights, flat)  # [N, T, K, P]
    cam = torch.gather(per_tile, 1, ids[:, None, None, :].expand(-1, 1, weights.shape[2], -1))
    cam = F.relu(cam[:, 0]).reshape(n, -1, h, w)
    return normalise_per_tile(cam, tile_ids, tags)


def train_tag_head(head: TagHead, pooled: Tensor, tags: Tensor, steps: int = 300,
                   lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0) -> list[float]:
    """Fit the map on tile features [M, C] and their tags [M, K] (untagged tiles removed by
    the caller); full-batch AdamW with BCE on the scores. Returns the loss per step."""
    torch.manual_seed(seed)
    tags = tags.float()
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    # Positives are rarer than negatives (3.3 tags of 11 per 3x4 tile): weight them up.
    positive = tags.mean().clamp(min=1e-3)
    pos_weight = ((1 - positive) / positive).expand(tags.shape[1])
    losses = []
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(head(pooled), tags, pos_weight=pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().item())
    return losses
