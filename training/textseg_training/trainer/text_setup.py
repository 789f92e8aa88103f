"""The text side of a run, from its TrainConfig: which encoder, what the TGM is given.

Stage 1 computes fixed class embeddings once (the class names, the prompts' initial values,
or a no-language control) and drops the encoder; stages 2 and e2e keep the frozen encoder and
the prompt learner, which run every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from textseg_training.trainer.config import TrainConfig


@dataclass
class TextSide:
    identity: str = "none"  # the encoder and a hash of its weights (or the control's name)
    width: int = 0  # embedding width; 0 without text (the baseline)
    encoder: nn.Module | None = None  # kept only when prompts are learned
    prompt_learner: nn.Module | None = None
    fixed_embeddings: torch.Tensor | None = None  # [K, width]: stage 1's, computed once


def build_text_side(config: TrainConfig, class_names: tuple[str, ...], device: torch.device,
                    cache_dir: Path) -> TextSide:
    if not config.uses_text:
        return TextSide()
    from textseg_training.text import PromptLearner, build_text_encoder

    options = ({"context_length": config.text_context_length}
               if config.text_context_length else {})
    if config.text_control == "random_encoder":
        from textseg_training.text import random_text_encoder

        encoder = random_text_encoder(config.text_encoder, config.seed, **options)
    else:
        encoder = build_text_encoder(config.text_encoder, weights=config.text_weights,
                                     allow_random=config.allow_random_text_encoder, **options)
    side = TextSide(identity=encoder.identity, width=encoder.width)
    # Stage 2's prompts at their initial values: the seeded context, M and std.
    initial_prompts = PromptLearner(
        encoder, class_names, num_prompts=config.num_prompts,
        init_std=config.prompt_init_std, seed=config.resolved_prompt_init_seed
    ) if config.learns_prompts or config.stage1_text == "initial_prompts" else None
    if config.learns_prompts:
        side.encoder = encoder.to(device)
        side.prompt_learner = initial_prompts.to(device)
        return side
    if config.stage1_text == "initial_prompts":
        # Their embeddings, once, in fp32: stage 2 starts exactly where stage 1 ended.
        with torch.no_grad():
            side.fixed_embeddings = initial_prompts().float()
        return side
    if config.text_control == "random_embeddings":
        from textseg_training.text import random_embeddings_identity, random_unit_embeddings

        side.fixed_embeddings = random_unit_embeddings(len(class_names), side.width, config.seed)
        side.identity = random_embeddings_identity(side.width, config.seed)
        return side
    from textseg_training.text import class_embeddings

    side.fixed_embeddings = class_embeddings(encoder, class_names, cache_dir=cache_dir)
    if config.text_control == "permuted_embeddings":
        from textseg_training.text import permuted_embeddings, permuted_embeddings_identity

        side.fixed_embeddings, order = permuted_embeddings(side.fixed_embeddings)
        side.identity = permuted_embeddings_identity(encoder.identity, order)
    return side  # stage 1 never runs the text encoder per step: it is dropped here
