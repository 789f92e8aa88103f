"""Dataset descriptions: class names (the text given to the text encoder), palettes, ignore id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    network_input_size: tuple[int, int]  # (height, width) used for training and export
    # Optional coarse groups of class ids, e.g. the Cityscapes categories, for category IoU.
    categories: tuple[tuple[str, tuple[int, ...]], ...] = ()


CAMVID = DatasetSpec(
    name="camvid",
    # Natural phrases in the SegNet label order (id 11 = void, ignored).
    class_names=("sky", "building", "pole", "road", "sidewalk", "tree", "traffic sign",
                 "fence", "car", "pedestrian", "bicyclist"),
    palette=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
             (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
             (0, 128, 192)),
    ignore_index=11,
    network_input_size=(360, 480),
)

CITYSCAPES = DatasetSpec(
    name="cityscapes",
    class_names=("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                 "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                 "truck", "bus", "train", "motorcycle", "bicycle"),
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
             (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
             (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
             (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)),
    ignore_index=255,
    network_input_size=(512, 1024),
    # The official Cityscapes categories over the 19 train ids (void excluded).
    categories=(("flat", (0, 1)), ("construction", (2, 3, 4)), ("object", (5, 6, 7)),
                ("nature", (8, 9)), ("sky", (10,)), ("human", (11, 12)),
                ("vehicle", (13, 14, 15, 16, 17, 18))),
)

DATASETS = {spec.name: spec for spec in (CAMVID, CITYSCAPES)}
