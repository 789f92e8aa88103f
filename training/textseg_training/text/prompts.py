"""CoOp prompt learning, class-specific context ("CSC"): K x M learnable input vectors.

Each class k gets its own M vectors, inserted after the start token and before the class-name
tokens: [start, v_k1 .. v_kM, name tokens, end]. The sequence runs through the frozen text
encoder and only the vectors learn (stage 2 of the method). Init N(0, init_std) as CoOp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .encoders import TextEncoder


class PromptLearner(nn.Module):
    """`forward()` -> [K, width] text embeddings of the learnable prompts + class names.

    The frozen encoder is deliberately *not* a submodule: `parameters()` and `state_dict()`
    hold only `prompts` (what stage 2 trains and saves; 63.7M frozen CLIP weights would
    otherwise land in every checkpoint and optimizer). Move the encoder yourself
    (`learner.encoder.to(device)`) when moving the learner.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        class_names: Sequence[str],
        num_prompts: int = 11,
        init_std: float = 0.02,
        init: Tensor | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1, got {num_prompts}")
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.num_prompts = num_prompts
        self.encoder_identity = encoder.identity
        # A tuple keeps nn.Module from registering the encoder as a child (see class doc).
        self._encoder_ref: tuple[TextEncoder] = (encoder,)

        shape = (len(self.class_names), num_prompts, encoder.token_width)
        if init is None:
            # A seed of its own: the same context in stage 1 (initial_prompts) and stage 2.
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            init = torch.randn(shape, generator=generator) * init_std
        elif tuple(init.shape) != shape:
            raise ValueError(f"prompt init has shape {tuple(init.shape)}, expected {shape}")
        self.prompts = nn.Parameter(init.detach().clone().float())

        # Token ids are fixed per class list: compute once, move with the learner, never save.
        self._token_keys: list[str] = []
        for key, value in encoder.prompt_tokens(self.class_names, num_prompts).items():
            self.register_buffer(f"tokens_{key}", value, persistent=False)
            self._token_keys.append(key)

    @classmethod
    def from_phrase(
        cls, encoder: TextEncoder, class_names: Sequence[str], phrase: str = "a photo of a"
    ) -> PromptLearner:
        """Start every class from the token embeddings of `phrase` (M = its token count)."""
        vectors = encoder.token_embeddings(phrase).float().cpu()  # [M, token_width]
        init = vectors.unsqueeze(0).repeat(len(tuple(class_names)), 1, 1)
        return cls(encoder, class_names, num_prompts=vectors.shape[0], init=init)

    @property
    def encoder(self) -> TextEncoder:
        return self._encoder_ref[0]

    def forward(self) -> Tensor:
        encoder = self.encoder
        if encoder.device != self.prompts.device:
            raise RuntimeError(
                f"prompts are on {self.prompts.device} but the text encoder is on "
                f"{encoder.device}: call learner.encoder.to(device) too"
            )
        tokens = {key: getattr(self, f"tokens_{key}") for key in self._token_keys}
        return encoder.forward_prompts(self.prompts, tokens)

    def extra_repr(self) -> str:
        return (
            f"classes={len(self.class_names)}, num_prompts={self.num_prompts}, "
            f"encoder={self.encoder_identity}"
        )
