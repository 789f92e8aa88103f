"""Bidirectional fusion bridge: language guidance for lightweight backbones (seed 001).

"CLIP for Lightweight Semantic Segmentation" (Jin & Yang, PRCV 2023) argues that a lightweight
backbone cannot align its features with text embeddings by a cosine alone (the TGM), and puts
a CNN branch and a transformer branch in parallel with a two-way bridge between them. No code
was published; only the abstract is known. This is our design of it, every open choice named:

  inputs      F32 [N, C, h, w] (stride 32) and the K class text embeddings [K, D].
  entry       F32 -> width `d` by a 1x1 conv + BN + ReLU (visual tokens); text -> `d` by a
              linear layer + LayerNorm (tokens at the visual tokens' scale, so the bridge does
              not drown the class identity), the same K tokens for every image of the batch.
  N layers    each layer, in this order:
    CNN branch        depthwise 3x3 conv + BN + ReLU, pointwise 1x1 conv + BN, residual:
                      spatial detail and local context on the visual map.
    transformer       pre-norm self-attention over the K text tokens + a 2x MLP, residuals.
    bridge v -> t     each text token attends to the h*w visual tokens (cross-attention):
                      the text moves towards what this image shows.
    bridge t -> v     each visual position attends to the K text tokens: the features move
                      towards the text space.
  output      score = cos(visual token, text token) per position and class [N, K, h, w], the
              fused map cat(F32, score) with C + K channels, exactly the TGM's interface, so
              the head, L_text on the score, stage 1, stage 2 and e2e are unchanged.

Attention is written with Linear layers, MatMul and Softmax (no fused attention op), heads of
width 32, so the export is plain ONNX that TensorRT's parser takes. At export the K initial
embeddings are the `text_embeddings` buffer (a constant); everything image-dependent (the
bridge's text tokens included) stays in the graph. Defaults N = 2, d = 128 (see the README's
sweep for how they were chosen).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .text_guidance import TextGuidance


class Attention(nn.Module):
    """Multi-head attention of queries [N, Lq, d] over keys/values [N, Lk, d]."""

    def __init__(self, width: int, head_width: int = 32) -> None:
        super().__init__()
        if width % head_width:
            raise ValueError(f"width {width} must be a multiple of the head width {head_width}")
        self.heads = width // head_width
        self.head_width = head_width
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def _split(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        return x.reshape(n, length, self.heads, self.head_width).transpose(1, 2)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        q, k, v = (self._split(f(x)) for f, x in ((self.query, queries), (self.key, context),
                                                   (self.value, context)))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_width), dim=-1)
        mixed = (weights @ v).transpose(1, 2)
        return self.out(mixed.reshape(queries.shape[0], queries.shape[1], -1))


class ConvBranch(nn.Module):
    """Depthwise 3x3 + pointwise 1x1, residual: spatial detail and context on the map."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.pointwise = nn.Conv2d(width, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn2(self.pointwise(F.relu(self.bn1(self.depthwise(x)))))


class BridgeLayer(nn.Module):
    """One layer: CNN branch, text transformer, then the bridge both ways."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = ConvBranch(width)
        self.text_norm = nn.LayerNorm(width)
        self.text_self = Attention(width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))
        self.to_text_norm = nn.LayerNorm(width)
        self.to_text = Attention(width)  # text queries, visual keys
        self.to_visual_norm = nn.LayerNorm(width)
        self.to_visual = Attention(width)  # visual queries, text keys

    def forward(self, visual: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        visual = self.conv(visual)
        n, d, h, w = visual.shape
        tokens = visual.flatten(2).transpose(1, 2)  # [N, h*w, d]
        t = self.text_norm(text)
        text = text + self.text_self(t, t)
        text = text + self.mlp(self.mlp_norm(text))
        text = text + self.to_text(self.to_text_norm(text), tokens)
        tokens = tokens + self.to_visual(self.to_visual_norm(tokens), text)
        return tokens.transpose(1, 2).reshape(n, d, h, w), text


class TextBridge(nn.Module):
    """Drop-in for TextGuidance: (fused [N, C32 + K, h, w], score [N, K, h, w]).

    Args:
        in_chs: channels of F32.
        num_classes: K.
        text_width: D, the text embeddings' width.
        width: d, the bridge's inner width (a multiple of 32).
        layers: N bridge layers.
    """

    def __init__(self, in_chs: int, num_classes: int, text_width: int, width: int = 128,
                 layers: int = 2) -> None:
        super().__init__()
        if min(in_chs, num_classes, text_width, width, layers) < 1:
            raise ValueError(f"bad TextBridge sizes in_chs={in_chs}, num_classes={num_classes}"
                             f", text_width={text_width}, width={width}, layers={layers}")
        self.in_chs, self.num_classes, self.text_width = in_chs, num_classes, text_width
        self.width, self.num_layers = width, layers
        self.visual_in = nn.Sequential(nn.Conv2d(in_chs, width, 1, bias=False),
                                       nn.BatchNorm2d(width), nn.ReLU())
        # LayerNorm after the projection: text tokens start at the visual tokens' scale (BN'd),
        # so the first cross-attention does not drown the class identity.
        self.text_in = nn.Sequential(nn.Linear(text_width, width), nn.LayerNorm(width))
        self.layers = nn.ModuleList(BridgeLayer(width) for _ in range(layers))
        self.register_buffer("text_embeddings", torch.zeros(num_classes, text_width))

    # The same buffer handling and fused width as the TGM's (one implementation).
    out_chs = TextGuidance.out_chs
    _check = TextGuidance._check
    set_text_embeddings = TextGuidance.set_text_embeddings

    def forward(self, f32: Tensor, embeddings: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if embeddings is None:
            text = self.text_embeddings
        else:
            self._check(embeddings, "embeddings")
            text = embeddings.to(f32.dtype)
        visual = self.visual_in(f32)
        tokens = self.text_in(text).unsqueeze(0).expand(f32.shape[0], -1, -1)
        for layer in self.layers:
            visual, tokens = layer(visual, tokens)
        n, d, h, w = visual.shape
        pixels = F.normalize(visual.flatten(2), dim=1)  # [N, d, h*w]
        classes = F.normalize(tokens, dim=2)  # [N, K, d]
        score = (classes @ pixels).reshape(n, self.num_classes, h, w)
        return torch.cat([f32, score], dim=1), score

    def macs(self, height: int, width: int) -> int:
        """The attention products and the final cosine (its Linear and Conv layers are
        counted as ordinary layers)."""
        hw, k, d = height * width, self.num_classes, self.width
        per_layer = k * k * d * 2 + 2 * (k * hw * d * 2)  # self-attn + both cross-attns
        return self.num_layers * per_layer + k * hw * d
