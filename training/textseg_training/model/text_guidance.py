"""Textual Guidance Module (TGM): cosine score maps between F32 pixels and class text embeddings.

Per pixel of the stride-32 backbone feature F32 and per class k, the score is
``cos(F32(i, j), T_k)``; the K score maps are concatenated to the *original* F32 so that ARM32
and the global-context branch of the head see ``C32 + K`` channels. The same score map, divided
by a temperature, also feeds the auxiliary text loss (done by the loss, not here).

At inference only the final class embeddings remain, as the persistent buffer
``text_embeddings`` (so they live in the state dict and in exported graphs): no text encoder,
no prompts. When the text width differs from F32's width (STDC F32 = 1024 = CLIP RN50's
embedding width, so CLIP needs none; MiniLM = 384 does) a learned 1x1 projection maps F32 to
the text width before the cosine; the concatenation still uses the unprojected F32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextGuidance(nn.Module):
    """Cosine score map of F32 against K class text embeddings, fused by concatenation.

    Args:
        in_chs: channels of F32.
        num_classes: K, the number of class embeddings (= score channels added).
        text_width: width of the text embeddings.
    """

    def __init__(self, in_chs: int, num_classes: int, text_width: int) -> None:
        super().__init__()
        if in_chs < 1 or num_classes < 1 or text_width < 1:
            raise ValueError(
                f"bad TextGuidance sizes in_chs={in_chs}, num_classes={num_classes}, "
                f"text_width={text_width}"
            )
        self.in_chs = in_chs
        self.num_classes = num_classes
        self.text_width = text_width
        # Only when the widths differ: a projection would otherwise be a needless extra layer
        # between the (CLIP-aligned) feature and the text space.
        self.proj: nn.Conv2d | None = (
            nn.Conv2d(in_chs, text_width, 1, bias=False) if text_width != in_chs else None
        )
        # Zeros until set: a zero embedding scores 0 everywhere instead of NaN.
        self.register_buffer("text_embeddings", torch.zeros(num_classes, text_width))

    @property
    def out_chs(self) -> int:
        """Channels of the fused feature: F32's plus one score map per class."""
        return self.in_chs + self.num_classes

    def _check(self, emb: Tensor, what: str) -> None:
        if emb.shape != self.text_embeddings.shape:
            raise ValueError(
                f"{what} must have shape [num_classes, text_width] = "
                f"{list(self.text_embeddings.shape)}, got {list(emb.shape)}"
            )

    @torch.no_grad()
    def set_text_embeddings(self, embeddings: Tensor) -> None:
        """Copy ``embeddings`` [K, text_width] into the buffer (e.g. the stage-2 result)."""
        self._check(embeddings, "text embeddings")
        self.text_embeddings.copy_(embeddings.detach())

    def forward(self, f32: Tensor, embeddings: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return (fused [N, C32 + K, h, w], score [N, K, h, w]).

        ``embeddings`` overrides the buffer for this call (stage 2 passes the prompt learner's
        output every step, so gradients reach the prompts); otherwise the buffer is used.
        """
        if embeddings is None:
            text = self.text_embeddings
        else:
            self._check(embeddings, "embeddings")
            text = embeddings.to(f32.dtype)
        feat = self.proj(f32) if self.proj is not None else f32
        # A 1x1 convolution with the normalised embeddings as weights is the per-pixel dot
        # product; it exports as a plain Conv (ONNX / TensorRT) instead of an einsum.
        weight = F.normalize(text, dim=1)[:, :, None, None]
        score = F.conv2d(F.normalize(feat, dim=1), weight)
        return torch.cat([f32, score], dim=1), score

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of the cosine itself (the projection is an ordinary conv)."""
        return self.num_classes * self.text_width * height * width
