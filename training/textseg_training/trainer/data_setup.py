"""From a TrainConfig to datasets and loaders; augmentation seeds come from the sampler."""

from __future__ import annotations

from pathlib import Path

import torch

from textseg_training.data import (
    EvalTransform,
    SegmentationDataset,
    TrainTransform,
    camvid,
    cityscapes,
    custom,
)
from textseg_training.dataset_specs import DATASETS, DatasetSpec
from textseg_training.trainer.config import TrainConfig
from textseg_training.trainer.distributed import DistributedContext

# A custom dataset without its own validation YAML keeps every HOLDOUT_EVERY-th image for val.
HOLDOUT_EVERY = 10


def dataset_spec(config: TrainConfig) -> DatasetSpec:
    if config.dataset in DATASETS:
        return DATASETS[config.dataset]
    _, spec = custom(Path(config.dataset))
    return spec


def build_datasets(config: TrainConfig, mean, std
                   ) -> tuple[SegmentationDataset, dict[str, SegmentationDataset], DatasetSpec]:
    """Training set (with augmentation) and the evaluation sets (normalised, labels full
    size): "val", and "heldout" (the training frames `train_exclude` leaves out) when set."""
    train_set, val_set, spec = _build_datasets(config, mean, std)
    eval_sets = {"val": val_set}
    if config.train_exclude:
        heldout = split_off(train_set, config.train_exclude, val_set.transform)
        eval_sets["heldout"] = heldout
    for dataset in (train_set, *eval_sets.values()):
        dataset.cache_mb = config.data_cache_mb
    return train_set, eval_sets, spec


def split_off(train_set: SegmentationDataset, prefixes: tuple[str, ...], transform
              ) -> SegmentationDataset:
    """Move the pairs whose image file name starts with one of `prefixes` out of
    `train_set` into a new evaluation set (named after them); refuses an empty side."""
    held = [p for p in train_set.pairs if p[0].name.startswith(prefixes)]
    kept = [p for p in train_set.pairs if not p[0].name.startswith(prefixes)]
    if not held:
        raise ValueError(f"train_exclude {list(prefixes)}: no training image name starts with "
                         f"it (e.g. {train_set.pairs[0][0].name})")
    if not kept:
        raise ValueError(f"train_exclude {list(prefixes)} leaves no training image")
    train_set.pairs = kept
    return SegmentationDataset(held, train_set.num_classes, train_set.ignore_index, transform,
                               name=f"{train_set.name}-heldout:{'+'.join(prefixes)}")


def _build_datasets(config: TrainConfig, mean, std
                    ) -> tuple[SegmentationDataset, SegmentationDataset, DatasetSpec]:
    spec = dataset_spec(config)
    train_tf = TrainTransform(config.crop_size, config.scales, mean, std, spec.ignore_index,
                              seed=config.seed, photometric=config.photometric)
    val_tf = EvalTransform(mean, std, size=tuple(spec.network_input_size))
    if config.dataset == "camvid":
        return (camvid(Path(config.data_root), "train", train_tf),
                camvid(Path(config.data_root), "val", val_tf), spec)
    if config.dataset == "cityscapes":
        return (cityscapes(Path(config.data_root), "train", train_tf),
                cityscapes(Path(config.data_root), "val", val_tf), spec)
    train_set, spec = custom(Path(config.dataset), train_tf)
    if config.val_dataset:
        val_set, val_spec = custom(Path(config.val_dataset), val_tf)
        if val_spec.class_names != spec.class_names:
            raise ValueError(f"{config.val_dataset}: class names differ from {config.dataset}")
    else:
        pairs = train_set.pairs
        val_pairs = pairs[::HOLDOUT_EVERY]
        train_set.pairs = [p for i, p in enumerate(pairs) if i % HOLDOUT_EVERY]
        val_set = SegmentationDataset(val_pairs, train_set.num_classes, spec.ignore_index,
                                      val_tf, name=f"{spec.name}/holdout")
    return train_set, val_set, spec


class SeededItems(torch.utils.data.Dataset):
    """Takes (index, seed) from ResumableSampler and seeds the augmentation with it."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        self.dataset.transform.reseed(seed)
        return self.dataset[index]


def build_val_loader(dataset: SegmentationDataset, config: TrainConfig,
                     context: DistributedContext) -> torch.utils.data.DataLoader:
    sampler = None
    if context.enabled:
        # Every image exactly once over all processes: DistributedSampler would pad the last
        # shard with repeats, which the summed confusion matrix would then count twice.
        sampler = list(range(context.rank, len(dataset), context.world_size))
    # Batch 1: validation labels keep their own (possibly different) full sizes.
    return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, sampler=sampler,
                                       num_workers=config.num_workers)
