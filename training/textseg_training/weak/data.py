"""The weak data path: train images and their tile tags, never a label file.

Each item is (image float [3, H, W] normalised, tile ids int64 [H, W], tags float [T, K]); the
tile-id map goes through the same augmentation as a label would (nearest resizing, crop, flip,
padding marked `TILE_IGNORE`), so the tags still say which classes each pixel's tile holds.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from textseg_training.data.datasets import DataError
from textseg_training.weak.tags import TILE_IGNORE, TagSet


class WeakTrainSet(Dataset):
    """Images listed by a tags file (relative to `data_root`) with their tile tags.

    Args:
        tags: the TagSet (made by `textseg-train weak-tags`; possibly `shuffled`).
        data_root: the folder the tags' image paths are relative to.
        transform: a TrainTransform built with ignore_index TILE_IGNORE (the tile ids take
            the place of a label).
    """

    def __init__(self, tags: TagSet, data_root: str | Path, transform=None) -> None:
        if not tags.images:
            raise DataError("the tags file lists no images")
        self.tags = tags
        self.root = Path(data_root)
        self.transform = transform
        self.paths = [self.root / name for name in tags.images]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} image(s) of the tags file not found under "
                            f"{self.root}, e.g. {missing[0]}")

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> np.ndarray:
        bgr = cv2.imread(str(self.paths[index]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"cannot read image {self.paths[index]}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        image = self.load_image(index)
        ids = self.tags.grid.tile_ids(*image.shape[:2])
        if self.transform is None:
            tensor = torch.from_numpy(image.transpose(2, 0, 1).copy()).float() / 255.0
            tile_ids = torch.from_numpy(ids.astype(np.int64))
        else:
            tensor, tile_ids = self.transform(image, ids)
        return tensor, tile_ids, torch.from_numpy(self.tags.tags[index]).float()


__all__ = ["TILE_IGNORE", "WeakTrainSet"]
