"""Reproducible, resumable sample order for iteration-based training.

The sample stream is the concatenation of per-epoch permutations seeded by (seed, epoch).
Iteration i of rank r takes its slice of global batch i, and every sample carries its own
augmentation seed derived from its stream position. So a run resumed at iteration i sees
exactly the batches and augmentations it would have seen, whatever the worker count.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class ResumableSampler(torch.utils.data.Sampler):
    def __init__(self, dataset_len: int, batch_size: int, start_iteration: int,
                 total_iterations: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if dataset_len < 1:
            raise ValueError("empty dataset")
        self.n = dataset_len
        self.batch_size = batch_size
        self.start = start_iteration
        self.total = total_iterations
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._cached_epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._cached_epoch = epoch
        return self._perm

    def __iter__(self) -> Iterator[tuple[int, int]]:
        global_batch = self.batch_size * self.world_size
        for iteration in range(self.start, self.total):
            first = iteration * global_batch + self.rank * self.batch_size
            for position in range(first, first + self.batch_size):
                epoch, offset = divmod(position, self.n)
                index = int(self._permutation(epoch)[offset])
                yield index, _item_seed(self.seed, position)

    def __len__(self) -> int:
        return (self.total - self.start) * self.batch_size


def _item_seed(seed: int, position: int) -> int:
    return int(np.random.default_rng([seed, position, 7]).integers(0, 2**63 - 1))
