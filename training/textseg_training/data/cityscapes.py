"""Cityscapes in its standard layout, with the official label id -> train id mapping.

    {root}/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    {root}/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png   (preferred: 19 ids + 255)
    {root}/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png        (fallback: mapped here)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textseg_training.data.datasets import DataError, SegmentationDataset, Transform
from textseg_training.dataset_specs import CITYSCAPES

IGNORE = CITYSCAPES.ignore_index

# Label id -> train id from the Cityscapes label definition (cityscapesscripts labels.py).
# Ids not listed (0-6 void/ego/static/..., 9 parking, 10 rail track, 14 guard rail, 15 bridge,
# 16 tunnel, 18 polegroup, 29 caravan, 30 trailer, and -1 license plate) are ignored.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0,    # road
    8: 1,    # sidewalk
    11: 2,   # building
    12: 3,   # wall
    13: 4,   # fence
    17: 5,   # pole
    19: 6,   # traffic light
    20: 7,   # traffic sign
    21: 8,   # vegetation
    22: 9,   # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}


def label_id_lut() -> np.ndarray:
    """A 256-entry uint8 table: lut[label_id] = train id (255 for ignored ids)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"


def cityscapes(root: Path, split: str, transform: Transform | None = None) -> SegmentationDataset:
    """Cityscapes fine annotations for `split` ('train', 'val' or 'test').

    Uses `*_labelTrainIds.png` when every image has one (what cityscapesscripts'
    createTrainIdLabelImgs writes), else `*_labelIds.png` mapped with `LABEL_ID_TO_TRAIN_ID`.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"cityscapes split must be 'train', 'val' or 'test', got {split!r}")
    root = Path(root)
    image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(f"Cityscapes folder {folder} not found")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DataError(f"Cityscapes: empty dataset (no *{IMAGE_SUFFIX} under {image_dir})")

    def label_for(image: Path, suffix: str) -> Path:
        stem = image.name[: -len(IMAGE_SUFFIX)]
        return label_dir / image.parent.name / f"{stem}{suffix}"

    use_train_ids = all(label_for(i, TRAIN_ID_SUFFIX).is_file() for i in images)
    suffix = TRAIN_ID_SUFFIX if use_train_ids else LABEL_ID_SUFFIX
    pairs = []
    for image in images:
        label = label_for(image, suffix)
        if not label.is_file():
            raise DataError(f"image {image} has no label (expected {label} or "
                            f"{label_for(image, TRAIN_ID_SUFFIX).name})")
        pairs.append((image, label))
    # Labels without an image (e.g. a partly copied leftImg8bit folder).
    paired_labels = {p[1] for p in pairs}
    for label in sorted(label_dir.glob(f"*/*{suffix}")):
        if label not in paired_labels:
            raise DataError(f"label {label} has no image in {image_dir}")
    return SegmentationDataset(pairs, len(CITYSCAPES.class_names), IGNORE, transform,
                               label_lut=None if use_train_ids else label_id_lut(),
                               name=f"cityscapes/{split}")
