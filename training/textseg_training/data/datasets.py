"""Segmentation datasets over (image, label) file pairs, with checks that name the bad file.

Pairing problems (a missing image or label) are found when a dataset is built; per-file
problems (unreadable file, size mismatch, label values out of range) when an item is loaded, so
building a dataset never reads every file. `validate_dataset` loads items to find the latter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch import Tensor
from torch.utils.data import Dataset

from textseg_training.dataset_specs import CAMVID, DatasetSpec

# transform(image uint8 RGB [H,W,3], label integer [H,W]) -> (image float [3,H,W], label int64)
Transform = Callable[[np.ndarray, np.ndarray], tuple[Tensor, Tensor]]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DataError(ValueError):
    """A dataset problem; the message names the offending file or key."""


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[Tensor, Tensor]:
    """The default transform: image float [3,H,W] on the 0..1 scale (not normalised)."""
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
    return img, torch.from_numpy(label.astype(np.int64))


class SegmentationDataset(Dataset):
    """(image_path, label_path) pairs -> (image float [3,H,W], label int64 [H,W]).

    Args:
        pairs: image and label files; labels hold class indices (single-channel PNG).
        num_classes: valid label values are 0..num_classes-1 plus `ignore_index`.
        ignore_index: label value excluded from losses and metrics.
        transform: augmentation / normalisation (see `data.transforms`); None gives the
            0..1 image without normalisation.
        label_lut: optional 256-entry lookup table applied to raw label values first (e.g.
            Cityscapes label ids -> train ids).
        cache_mb: keep decoded, checked pairs in memory up to this many MiB (per process:
            each data-loader worker fills its own). PNG decoding was the largest data cost of
            a CPU run; CamVid's 367 training pairs take 250 MiB. 0 disables.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        num_classes: int,
        ignore_index: int,
        transform: Transform | None = None,
        label_lut: np.ndarray | None = None,
        name: str = "dataset",
        cache_mb: float = 0.0,
    ) -> None:
        if not pairs:
            raise DataError(f"{name}: empty dataset (no image/label pairs found)")
        if num_classes < 1:
            raise DataError(f"{name}: num_classes must be >= 1, got {num_classes}")
        self.pairs = [(Path(i), Path(lab)) for i, lab in pairs]
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.label_lut = label_lut
        self.name = name
        self.cache_mb = float(cache_mb)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and check one pair: (uint8 RGB [H,W,3], integer label [H,W]).

        Cached pairs are returned read-only: transforms must not write into them."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        image, label = self._read(index)
        size = image.nbytes + label.nbytes
        if self._cached_bytes + size <= self.cache_mb * 2**20:
            image.flags.writeable = label.flags.writeable = False
            self._cache[index] = (image, label)
            self._cached_bytes += size
        return image, label

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.pairs[index]
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"cannot read image {image_path}")
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if label is None:
            raise DataError(f"cannot read label {label_path}")
        if label.ndim != 2:
            raise DataError(
                f"label {label_path} has {label.shape[2]} channels; labels must be "
                "single-channel class-index images (convert colour-coded labels first)")
        if bgr.shape[:2] != label.shape:
            raise DataError(
                f"size mismatch: image {image_path} is {bgr.shape[1]}x{bgr.shape[0]} but label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH)")
        if self.label_lut is not None:
            if int(label.max()) >= len(self.label_lut):
                raise DataError(f"label {label_path} has value {int(label.max())} beyond the "
                                f"{len(self.label_lut)}-entry id mapping")
            label = self.label_lut[label]
        invalid = (label >= self.num_classes) & (label != self.ignore_index)
        if invalid.any():
            bad = np.unique(label[invalid])[:10].tolist()
            raise DataError(
                f"label {label_path} has values {bad} outside 0..{self.num_classes - 1} that are "
                f"not the ignore index {self.ignore_index}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.load_raw(index)
        transform = self.transform or to_tensors
        return transform(image, label)


# ---------------------------------------------------------------------------------- builders

def camvid(root: Path, split: str, transform: Transform | None = None) -> SegmentationDataset:
    """CamVid (SegNet layout): `{split}.txt` lists `image label` paths relative to `root`."""
    if split not in ("train", "val"):
        raise ValueError(f"camvid split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    list_file = root / f"{split}.txt"
    if not list_file.is_file():
        raise DataError(f"CamVid list file {list_file} not found")
    pairs = []
    for line_no, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{list_file}:{line_no}: expected 'image label', got {line!r}")
        image, label = root / parts[0], root / parts[1]
        if not image.is_file():
            raise DataError(f"{list_file}:{line_no}: image {image} not found")
        if not label.is_file():
            raise DataError(f"{list_file}:{line_no}: label {label} not found for image {image}")
        pairs.append((image, label))
    return SegmentationDataset(pairs, len(CAMVID.class_names), CAMVID.ignore_index, transform,
                               name=f"camvid/{split}")


def _strip_suffix(path: Path, folder: Path, suffix: str) -> str:
    """Matching key: the path relative to its folder, without `suffix` (so subfolders match)."""
    rel = path.relative_to(folder).as_posix()
    return rel[: len(rel) - len(suffix)]


def _collect(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        suffix = next((s for s in suffixes if path.name.lower().endswith(s.lower())), None)
        if suffix is None:
            continue
        key = _strip_suffix(path, folder, suffix)
        if key in found:
            raise DataError(f"two files share the stem {key!r}: {found[key]} and {path}")
        found[key] = path
    return found


def match_pairs(
    images_dir: Path, labels_dir: Path, image_suffixes: Sequence[str], label_suffix: str
) -> list[tuple[Path, Path]]:
    """Pair images and labels by stem (relative path without suffix); any orphan is an error."""
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(f"folder {folder} not found")
    images = _collect(images_dir, image_suffixes)
    labels = _collect(labels_dir, (label_suffix,))
    for key, image in images.items():
        if key not in labels:
            raise DataError(f"image {image} has no label (expected {labels_dir / key}"
                            f"{label_suffix})")
    for key, label in labels.items():
        if key not in images:
            raise DataError(f"label {label} has no image in {images_dir}")
    return [(images[k], labels[k]) for k in sorted(images)]


_REQUIRED_KEYS = ("name", "images", "labels", "class_names", "palette", "ignore_index")


def _spec_from_yaml(cfg: dict[str, Any], yaml_path: Path,
                    first_image: Callable[[], Path]) -> DatasetSpec:
    names = cfg["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{yaml_path}: 'class_names' must be a non-empty list of strings")
    palette = cfg["palette"]
    if not isinstance(palette, list) or len(palette) != len(names):
        count = len(palette) if isinstance(palette, list) else "no"
        raise DataError(f"{yaml_path}: 'palette' has {count} entries but 'class_names' has "
                        f"{len(names)}")
    for i, colour in enumerate(palette):
        if (not isinstance(colour, list) or len(colour) != 3
                or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour)):
            raise DataError(f"{yaml_path}: 'palette' entry {i} must be [r, g, b] in 0..255, "
                            f"got {colour!r}")
    ignore = cfg["ignore_index"]
    if not isinstance(ignore, int) or 0 <= ignore < len(names):
        raise DataError(f"{yaml_path}: 'ignore_index' must be an integer outside "
                        f"0..{len(names) - 1}, got {ignore!r}")
    size = cfg.get("network_input_size")
    if size is None:
        # Default: the first image's size (reads one file, not the whole dataset).
        image = cv2.imread(str(first_image()), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"cannot read image {first_image()}")
        size = list(image.shape[:2])
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(s, int) and s > 0 for s in size)):
        raise DataError(f"{yaml_path}: 'network_input_size' must be [height, width], got "
                        f"{size!r}")
    categories = cfg.get("categories") or {}
    if not isinstance(categories, dict):
        raise DataError(f"{yaml_path}: 'categories' must map a name to a list of class ids")
    return DatasetSpec(
        name=str(cfg["name"]),
        class_names=tuple(names),
        palette=tuple((c[0], c[1], c[2]) for c in palette),
        ignore_index=ignore,
        network_input_size=(size[0], size[1]),
        categories=tuple((str(k), tuple(int(i) for i in v)) for k, v in categories.items()),
    )


def custom(
    yaml_path: Path, transform: Transform | None = None
) -> tuple[SegmentationDataset, DatasetSpec]:
    """A dataset described by a small YAML file (folders relative to the YAML file):

        name: mydata
        images: images            # image files (searched recursively)
        labels: labels            # single-channel class-index PNGs, same stems
        image_suffix: .jpg        # optional; default any of .png .jpg .jpeg .bmp .tif .tiff
        label_suffix: .png        # optional; default .png (may be e.g. _mask.png)
        class_names: [road, car]
        palette: [[128, 64, 128], [0, 0, 142]]
        ignore_index: 255
        network_input_size: [512, 1024]   # optional [h, w]; default: the first image's size
        categories: {flat: [0], vehicle: [1]}   # optional, for category IoU
    """
    yaml_path = Path(yaml_path)
    try:
        cfg = yaml.safe_load(yaml_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read dataset YAML {yaml_path}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise DataError(f"{yaml_path}: expected a mapping at the top level")
    missing = [k for k in _REQUIRED_KEYS if k not in cfg]
    if missing:
        raise DataError(f"{yaml_path}: missing required key(s) {missing}")
    base = yaml_path.parent
    image_suffix = cfg.get("image_suffix")
    pairs = match_pairs(base / str(cfg["images"]), base / str(cfg["labels"]),
                        (image_suffix,) if image_suffix else IMAGE_SUFFIXES,
                        str(cfg.get("label_suffix", ".png")))
    if not pairs:
        raise DataError(f"{yaml_path}: empty dataset (no images in {base / str(cfg['images'])})")
    spec = _spec_from_yaml(cfg, yaml_path, lambda: pairs[0][0])
    dataset = SegmentationDataset(pairs, len(spec.class_names), spec.ignore_index, transform,
                                  name=spec.name)
    return dataset, spec


# -------------------------------------------------------------------------------- validation

@dataclass
class DataReport:
    """What `validate_dataset` found: per-class pixel counts and one line per bad item."""

    checked: int
    num_classes: int
    class_pixels: np.ndarray  # int64 [num_classes]
    ignored_pixels: int
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self) -> None:
        if self.errors:
            shown = "\n  ".join(self.errors[:20])
            more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
            raise DataError(f"{len(self.errors)} bad item(s) of {self.checked}:\n  {shown}{more}")


def validate_dataset(
    dataset: SegmentationDataset, limit: int | None = None, raise_on_error: bool = False
) -> DataReport:
    """Load the first `limit` items (all when None) without augmentation and check each.

    Returns the report; with `raise_on_error` a report with errors raises `DataError`.
    """
    count = len(dataset) if limit is None else min(limit, len(dataset))
    k = dataset.num_classes
    pixels = np.zeros(k, dtype=np.int64)
    ignored = 0
    errors: list[str] = []
    for i in range(count):
        try:
            _, label = dataset.load_raw(i)
        except DataError as exc:
            errors.append(str(exc))
            continue
        hist = np.bincount(label[label != dataset.ignore_index].ravel(), minlength=k)
        pixels += hist[:k]
        ignored += int((label == dataset.ignore_index).sum())
    report = DataReport(count, k, pixels, ignored, errors)
    if raise_on_error:
        report.raise_if_errors()
    return report
