"""DataLoader construction with reproducible shuffling and per-worker augmentation seeds."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset


def _reseed_transform(dataset: Dataset, seed: int) -> None:
    """Give the dataset's transform (if it has `reseed`) a fresh numpy generator."""
    while isinstance(dataset, Subset):  # reach the transform through Subset wrappers
        dataset = dataset.dataset
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "reseed"):
        transform.reseed(seed)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: derive numpy / random / transform seeds from the worker's torch seed.

    torch gives each worker `base_seed + worker_id`, with base_seed drawn from the loader's
    seeded generator, so the streams are distinct per worker and reproducible per run.
    (OpenCV's thread count is deliberately not changed here: reconfiguring its thread pool in
    a forked worker deadlocks.)
    """
    seed = torch.initial_seed() % 2**63
    np.random.seed(seed % 2**32)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        _reseed_transform(info.dataset, seed)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    distributed: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order and augmentation are a function of `seed` (and the rank).

    With `distributed`, a DistributedSampler shards the data (same `seed` on every rank, so the
    shards agree); call `set_epoch(loader, epoch)` each epoch to reshuffle. Evaluation note:
    DistributedSampler pads the last shard with repeated items.
    """
    rank = _rank() if distributed else 0
    # Different ranks must not share augmentation streams: mix the rank into the worker seeds.
    loader_seed = int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)
    generator = torch.Generator().manual_seed(loader_seed)
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if num_workers == 0:
        # No workers: the transform runs in this process, seed it here.
        _reseed_transform(dataset, loader_seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        # Persistent workers keep their generators across epochs (and avoid re-spawning
        # workers every CamVid epoch of ~23 iterations).
        persistent_workers=num_workers > 0,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle a distributed loader for `epoch` (no-op for a plain one)."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
