"""Data: segmentation datasets (CamVid, Cityscapes, custom YAML), transforms and loaders."""

from textseg_training.data.cityscapes import LABEL_ID_TO_TRAIN_ID, cityscapes, label_id_lut
from textseg_training.data.datasets import (
    DataError,
    DataReport,
    SegmentationDataset,
    camvid,
    custom,
    match_pairs,
    validate_dataset,
)
from textseg_training.data.loader import build_loader, seed_worker, set_epoch
from textseg_training.data.transforms import (
    CAMVID_SCALES,
    CITYSCAPES_SCALES,
    EvalTransform,
    TrainTransform,
    scale_range,
)

__all__ = [
    "CAMVID_SCALES",
    "CITYSCAPES_SCALES",
    "LABEL_ID_TO_TRAIN_ID",
    "DataError",
    "DataReport",
    "EvalTransform",
    "SegmentationDataset",
    "TrainTransform",
    "build_loader",
    "camvid",
    "cityscapes",
    "custom",
    "label_id_lut",
    "match_pairs",
    "scale_range",
    "seed_worker",
    "set_epoch",
    "validate_dataset",
]
