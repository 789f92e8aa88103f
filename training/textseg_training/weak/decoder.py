"""WeCLIP's decoder: every tower level mapped to one width, fused, three transformer layers,
a 1x1 classifier, all at the tower's stride (16).

Its fused feature F also gives the decoder's affinity sigmoid(F^T F), which the refinement
module (RFM) and the affinity loss use.
"""

from __future__ import annotations

from torch import Tensor, nn


class LevelProjection(nn.Module):
    """WeCLIP's per-level MLP on tokens, as a 1x1 convolution on the level's map."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: nn.MultiheadAttention's inference fast path
    exports to no ONNX operator."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        n, length, width = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scale = q.shape[-1] ** -0.5
        attention = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)
        return self.out((attention @ v).transpose(1, 2).reshape(n, length, width))


class TransformerLayer(nn.Module):
    """Pre-norm self-attention and MLP over the positions of a [N, C, h, w] map."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.norm1(tokens)
        tokens = tokens + self.attn(x)
        return tokens + self.mlp(self.norm2(tokens))


class WeCLIPDecoder(nn.Module):
    def __init__(self, level_channels: tuple[int, ...], num_classes: int, width: int = 256,
                 layers: int = 3, heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"decoder width {width} must be a multiple of heads {heads}")
        self.levels = nn.ModuleList(LevelProjection(c, width) for c in level_channels)
        self.fuse = nn.Conv2d(width * len(level_channels), width, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.layers = nn.ModuleList(TransformerLayer(width, heads) for _ in range(layers))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, levels: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(logits [N, K, h, w], fused feature F [N, width, h, w])."""
        import torch

        if len(levels) != len(self.levels):
            raise ValueError(f"decoder built for {len(self.levels)} levels, got {len(levels)}")
        fused = self.dropout(self.fuse(torch.cat(
            [project(level) for project, level in zip(self.levels, levels, strict=True)], 1)))
        n, c, h, w = fused.shape
        tokens = fused.flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = layer(tokens)
        features = tokens.transpose(1, 2).reshape(n, c, h, w)
        return self.classifier(features), fused
