"""Tile tags: the only supervision of the weak mode, made once from the train masks.

Almost every CamVid frame holds almost every class, so a frame's tags say nearly nothing. Each
frame is cut into a fixed grid of tiles instead; a tile's tags are the classes covering at
least `threshold` of its pixels (void never counts; an all-void tile has no tags and gives no
supervision). `make_tags` is the one step of the weak path that reads label files: everything
after it sees images and this file only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.fileio import atomic_write_bytes

TILE_IGNORE = 255  # tile id of padded pixels after augmentation (grids have < 255 tiles)


@dataclass(frozen=True)
class TileGrid:
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.rows * self.cols >= TILE_IGNORE:
            raise ValueError(f"tile grid {self.rows}x{self.cols}: rows and cols must be >= 1 "
                             f"and rows*cols < {TILE_IGNORE}")

    @classmethod
    def parse(cls, text: str | Sequence[int]) -> TileGrid:
        """'3x4' (rows x cols) or [3, 4]."""
        try:
            if isinstance(text, str):
                rows, cols = (int(v) for v in text.lower().split("x"))
            else:
                rows, cols = (int(v) for v in text)
        except (TypeError, ValueError):
            raise ValueError(f"tile grid {text!r}: expected ROWSxCOLS, e.g. 3x4") from None
        return cls(rows, cols)

    @property
    def tiles(self) -> int:
        return self.rows * self.cols

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"

    def tile_ids(self, height: int, width: int) -> np.ndarray:
        """uint8 [height, width]: each pixel's tile (row-major), tiles as equal as integers
        allow."""
        rows = (np.arange(height) * self.rows // height).astype(np.uint8)
        cols = (np.arange(width) * self.cols // width).astype(np.uint8)
        return rows[:, None] * np.uint8(self.cols) + cols[None, :]


def tile_tags(label: np.ndarray, grid: TileGrid, num_classes: int, ignore_index: int,
              threshold: float) -> np.ndarray:
    """bool [tiles, num_classes]: class c is a tag of tile t when it covers at least
    `threshold` of the tile's pixels (void pixels count in the tile's size, never as a tag)."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"tag threshold must be in [0, 1), got {threshold}")
    ids = grid.tile_ids(*label.shape).astype(np.int64)
    valid = label != ignore_index
    counts = np.zeros((grid.tiles, num_classes + 1), dtype=np.int64)
    cls = np.where(valid, label, num_classes).astype(np.int64)
    np.add.at(counts, (ids.ravel(), cls.ravel()), 1)
    sizes = counts.sum(axis=1, keepdims=True)
    present = counts[:, :num_classes] > 0
    return present & (counts[:, :num_classes] >= threshold * sizes)


@dataclass
class TagSet:
    """Tile tags of a list of images (paths relative to `data_root`, as the list file has them).

    `tags`: bool [images, tiles, classes].
    """

    images: list[str]
    tags: np.ndarray
    grid: TileGrid
    threshold: float
    class_names: tuple[str, ...]
    dataset: str
    shuffled_seed: int | None = None  # set by `shuffled`: tag sets permuted across tiles

    def __post_init__(self) -> None:
        expected = (len(self.images), self.grid.tiles, len(self.class_names))
        if self.tags.shape != expected or self.tags.dtype != bool:
            raise ValueError(f"tags array {self.tags.shape} {self.tags.dtype} does not match "
                             f"{len(self.images)} images x {self.grid.tiles} tiles x "
                             f"{len(self.class_names)} classes (bool)")

    def save(self, path: str | Path) -> Path:
        meta = {"images": self.images, "grid": str(self.grid), "threshold": self.threshold,
                "class_names": list(self.class_names), "dataset": self.dataset,
                "shuffled_seed": self.shuffled_seed}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, tags=self.tags, meta=np.frombuffer(
            json.dumps(meta).encode(), dtype=np.uint8))
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> TagSet:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tags file {path} not found: make it with "
                                    "`textseg-train weak-tags CONFIG`")
        try:
            with np.load(path) as data:
                tags = data["tags"]
                meta = json.loads(data["meta"].tobytes().decode())
            return cls(images=list(meta["images"]), tags=tags.astype(bool),
                       grid=TileGrid.parse(meta["grid"]), threshold=float(meta["threshold"]),
                       class_names=tuple(meta["class_names"]), dataset=str(meta["dataset"]),
                       shuffled_seed=meta.get("shuffled_seed"))
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"{path}: not a tags file of textseg-train weak-tags ({exc})") \
                from None

    def shuffled(self, seed: int) -> TagSet:
        """The floor control: the tiles' tag sets permuted across all tiles of all images (the
        multiset of tag sets is kept; their placement carries no information)."""
        flat = self.tags.reshape(-1, self.tags.shape[-1])
        order = np.random.default_rng(seed).permutation(len(flat))
        return TagSet(self.images, flat[order].reshape(self.tags.shape).copy(), self.grid,
                      self.threshold, self.class_names, self.dataset, shuffled_seed=seed)

    def statistics(self) -> dict[str, object]:
        """Tags per tile, single-tag and untagged tiles, and each class's tag rate."""
        counts = self.tags.sum(axis=2)
        tagged = counts > 0
        rates = self.tags.mean(axis=(0, 1))
        return {
            "grid": str(self.grid), "threshold": self.threshold, "images": len(self.images),
            "tiles": int(counts.size),
            "tags_per_tile": round(float(counts[tagged].mean()), 3) if tagged.any() else 0.0,
            "single_tag_tiles": round(float((counts == 1).mean()), 4),
            "untagged_tiles": round(float((~tagged).mean()), 4),
            "tag_rate": {name: round(float(rate), 4)
                         for name, rate in zip(self.class_names, rates, strict=True)},
        }


def make_tags(dataset, grid: TileGrid, threshold: float, data_root: str | Path,
              class_names: Sequence[str], progress: bool = True) -> TagSet:
    """Tile tags of every item of a SegmentationDataset (reads its label files)."""
    from tqdm import tqdm

    root = Path(data_root).resolve()
    images, tags = [], []
    for index in tqdm(range(len(dataset)), desc=f"tags {grid}", disable=not progress):
        _, label = dataset.load_raw(index)
        tags.append(tile_tags(label, grid, dataset.num_classes, dataset.ignore_index, threshold))
        image_path = Path(dataset.pairs[index][0]).resolve()
        try:
            images.append(image_path.relative_to(root).as_posix())
        except ValueError:
            images.append(str(image_path))
    return TagSet(images, np.stack(tags), grid, threshold, tuple(class_names),
                  dataset.name.split("/")[0])


def tile_fill_floor(tags: TagSet, dataset, seed: int = 0) -> float:
    """Pseudo mIoU (percent) of filling each tile with one of its tags drawn at random: what
    the tags alone give, with no image. Needs the masks (GT), so only the tags tool runs it."""
    from textseg_training.weak.metrics import PseudoLabelScore

    rng = np.random.default_rng(seed)
    score = PseudoLabelScore(dataset.num_classes, dataset.ignore_index)
    for index in range(len(dataset)):
        _, label = dataset.load_raw(index)
        ids = tags.grid.tile_ids(*label.shape)
        choice = np.full(tags.grid.tiles, -1, dtype=np.int64)  # untagged: no label
        for tile in range(tags.grid.tiles):
            present = np.flatnonzero(tags.tags[index, tile])
            if present.size:
                choice[tile] = rng.choice(present)
        score.update(choice[ids], label)
    return 100.0 * float(np.nanmean(score.iou()))
