"""The no-language controls of the text experiment (docs/experiment.md).

- `random_encoder`: the text encoder's architecture and tokenizer with randomly drawn weights:
  the embeddings keep the structure of a transformer over the class names' tokens (similar
  names, similar vectors) but carry no learned language prior.
- `random_embeddings`: K fixed random unit vectors of the encoder's width: no structure at all,
  an auxiliary head with K extra channels and nothing else.
- `permuted_embeddings`: the pretrained encoder's class-name embeddings, each given to the wrong
  class by one fixed derangement: the embeddings' geometry kept, their meaning removed. If the
  language prior matters, the right assignment wins.

The first two are drawn from the run's seed, so every seed of a control row draws its own
(the derangement is one for all seeds), and stage 2
on top of a `random_encoder` stage 1 of the same seed draws the very same encoder again (the
stage-2 identity check compares the weights' digest).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import Tensor

from .encoders import TextEncoder, build_text_encoder

TEXT_CONTROLS = ("none", "random_encoder", "random_embeddings", "permuted_embeddings")
# Offsets the control draws from the run's seed, so they never replay the model's own stream.
_ENCODER_SEED_OFFSET = 7_919
_EMBEDDING_SEED_OFFSET = 104_729
# One derangement for every run and seed (the control's rows differ by the model's seed only).
_DERANGEMENT_SEED = 0


def random_text_encoder(name: str, seed: int, **options: Any) -> TextEncoder:
    """`name`'s architecture with weights drawn from `seed` (same seed, same encoder)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + _ENCODER_SEED_OFFSET)
        return build_text_encoder(name, random_init=True, **options)


def random_unit_embeddings(num_classes: int, width: int, seed: int) -> Tensor:
    """[num_classes, width] float32 vectors, uniform on the unit sphere, drawn from `seed`."""
    if num_classes < 1 or width < 1:
        raise ValueError(f"need num_classes >= 1 and width >= 1, got {num_classes}, {width}")
    generator = torch.Generator().manual_seed(seed + _EMBEDDING_SEED_OFFSET)
    return F.normalize(torch.randn(num_classes, width, generator=generator), dim=-1)


def random_embeddings_identity(width: int, seed: int) -> str:
    return f"random-embeddings-{width}@seed{seed}"


def fixed_derangement(num_classes: int) -> list[int]:
    """A permutation of range(num_classes) that moves every class: class k takes the embedding
    of class result[k]. The same for every run, drawn from a fixed generator."""
    if num_classes < 2:
        raise ValueError(f"a derangement needs at least 2 classes, got {num_classes}")
    generator = torch.Generator().manual_seed(_DERANGEMENT_SEED)
    while True:  # rejection sampling: about e draws on average
        order = torch.randperm(num_classes, generator=generator).tolist()
        if all(source != k for k, source in enumerate(order)):
            return order


def permuted_embeddings(embeddings: Tensor) -> tuple[Tensor, list[int]]:
    """`embeddings` [K, D] with its rows reassigned by fixed_derangement(K), and that order."""
    order = fixed_derangement(embeddings.shape[0])
    return embeddings[order], order


def permuted_embeddings_identity(encoder_identity: str, order: list[int]) -> str:
    return f"{encoder_identity}+derangement{order}"
