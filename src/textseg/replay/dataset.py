"""`textseg bag-from-dataset`: an image folder (+ label folder) becomes a ROS 2 bag.

Frames go on a camera topic as sensor_msgs/Image (or CompressedImage) at a chosen rate; the
ground-truth class-id images go on a second topic as mono8 sensor_msgs/Image with the same
header stamps. What evaluation needs to read the labels right (dataset, class names, the
ignore id) goes into the bag's metadata.yaml `custom_data` (keys `textseg.*`).

The bag is written into a temporary folder beside the target and renamed when complete, so a
half-written bag never appears under the requested name. One frame is in memory at a time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from textseg.imaging import encode_rgb
from textseg.replay.bagio import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    STORAGES,
    BagError,
    DatasetMeta,
    RawBagWriter,
    _typestore,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ENCODINGS = ("rgb8", "bgr8", "mono8")
COMPRESSED_FORMATS = ("jpeg", "png")
# CamVid (SegNet split): 11 classes, id 11 = void. Names as the project's models carry them.
CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "traffic sign",
                  "fence", "car", "pedestrian", "bicyclist")
CAMVID_VOID = 11
DEFAULT_IGNORE_ID = 255
DEFAULT_START_S = 1_700_000_000  # a fixed start time: the same folder gives the same bag
CAMVID_META = DatasetMeta(dataset="camvid", class_names=CAMVID_CLASSES, ignore_id=CAMVID_VOID)


@dataclass(frozen=True)
class Pair:
    image: Path
    labels: Path | None


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def camvid_label_folder(images: Path) -> Path | None:
    """CamVid's layout keeps the labels of `val/` in a sibling `valannot/`."""
    candidate = images.parent / f"{images.name}annot"
    return candidate if candidate.is_dir() else None


def looks_like_camvid(images: Path) -> bool:
    return camvid_label_folder(images) is not None and any(
        "camvid" in part.lower() for part in images.resolve().parts)


def pair_files(images: Path, labels: Path | None) -> list[Pair]:
    """Images in name order, each with the label file of the same stem (any image suffix)."""
    files = list_images(images)
    if labels is None:
        return [Pair(f, None) for f in files]
    if not labels.is_dir():
        raise FileNotFoundError(f"label folder not found: {labels}")
    by_stem: dict[str, Path] = {}
    for path in sorted(labels.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, path)
    missing = [f.name for f in files if f.stem not in by_stem]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(files)} images have no label file in {labels}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (labels are found "
            "by file name; pass --no-labels to write the images only)")
    return [Pair(f, by_stem[f.stem]) for f in files]


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read the image {path} (not an image, or damaged)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_labels(path: Path) -> np.ndarray:
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise ValueError(f"cannot read the label image {path} (not an image, or damaged)")
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"label image {path} is {labels.dtype} with shape {labels.shape}; "
                         "labels must be single-channel 8-bit class ids (a colour-coded mask "
                         "has to be converted to ids first)")
    return labels


def _header(stamp_ns: int, frame_id: str):
    store = _typestore()
    time_type = store.types["builtin_interfaces/msg/Time"]
    return store.types["std_msgs/msg/Header"](
        stamp=time_type(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
        frame_id=frame_id)


def image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8",
                  compressed: str | None = None) -> bytes:
    """Serialized sensor_msgs/Image (or CompressedImage when `compressed` is jpeg/png)."""
    store = _typestore()
    header = _header(stamp_ns, frame_id)
    if compressed:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg" if compressed == "jpeg" else ".png", bgr)
        if not ok:
            raise ValueError(f"cannot encode a {rgb.shape} frame as {compressed}")
        msg = store.types[COMPRESSED_TYPE](header=header,
                                           format=f"rgb8; {compressed} compressed bgr8",
                                           data=np.frombuffer(data.tobytes(), np.uint8))
        return bytes(store.serialize_cdr(msg, COMPRESSED_TYPE))
    step, data = encode_rgb(rgb, encoding)
    msg = store.types[IMAGE_TYPE](header=header, height=rgb.shape[0], width=rgb.shape[1],
                                  encoding=encoding, is_bigendian=0, step=step,
                                  data=np.frombuffer(data, np.uint8))
    return bytes(store.serialize_cdr(msg, IMAGE_TYPE))


def labels_message(labels: np.ndarray, stamp_ns: int, frame_id: str,
                   encoding: str = "mono8") -> bytes:
    """Serialized sensor_msgs/Image of a uint8 [H, W] (mono8) or [H, W, 3] (rgb8) array."""
    store = _typestore()
    labels = np.ascontiguousarray(labels, np.uint8)
    channels = 1 if labels.ndim == 2 else labels.shape[2]
    msg = store.types[IMAGE_TYPE](header=_header(stamp_ns, frame_id), height=labels.shape[0],
                                  width=labels.shape[1], encoding=encoding, is_bigendian=0,
                                  step=labels.shape[1] * channels, data=labels.reshape(-1))
    return bytes(store.serialize_cdr(msg, IMAGE_TYPE))


class FrameBagWriter(RawBagWriter):
    """Camera frames and label images into a new bag, one message at a time."""

    def __init__(self, path: str | Path, storage: str = "mcap", image_topic: str = "/camera/image",
                 labels_topic: str | None = "/camera/labels", meta: DatasetMeta | None = None,
                 compressed: str | None = None, compress_storage: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if compressed is not None and compressed not in COMPRESSED_FORMATS:
            raise ValueError(f"compressed format must be one of {', '.join(COMPRESSED_FORMATS)}")
        meta = meta or DatasetMeta()
        meta.image_topic, meta.labels_topic = image_topic, labels_topic
        super().__init__(path, storage, meta.to_custom_data(), compress_storage)
        self.meta = meta
        self.image_topic = image_topic
        self.labels_topic = labels_topic
        self.compressed = compressed
        self.frames = 0

    def __enter__(self) -> FrameBagWriter:
        super().__enter__()
        self.add_topic(self.image_topic, COMPRESSED_TYPE if self.compressed else IMAGE_TYPE)
        if self.labels_topic:
            self.add_topic(self.labels_topic, IMAGE_TYPE)
        return self

    def write_frame(self, rgb: np.ndarray, stamp_ns: int, labels: np.ndarray | None = None,
                    frame_id: str = "camera", encoding: str = "rgb8",
                    log_ns: int | None = None) -> None:
        log_ns = stamp_ns if log_ns is None else log_ns
        self.write(self.image_topic, log_ns,
                   image_message(rgb, stamp_ns, frame_id, encoding, self.compressed))
        if labels is not None:
            if not self.labels_topic:
                raise ValueError("labels given but the bag has no labels topic")
            self.write(self.labels_topic, log_ns, labels_message(labels, stamp_ns, frame_id))
        self.frames += 1


@dataclass
class BagFromDatasetResult:
    path: Path
    frames: int
    with_labels: bool
    meta: DatasetMeta
    seconds: float
    bytes: int
    image_topic: str
    labels_topic: str | None
    sizes: set[tuple[int, int]]


def remove_bag(path: Path) -> None:
    """Remove an existing bag for --force; refuses anything that does not look like one."""
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            raise FileExistsError(f"{path} exists and is not a ROS 2 bag (no metadata.yaml): "
                                  "not removing it")
        shutil.rmtree(path)
    elif path.exists():
        raise FileExistsError(f"{path} exists and is not a bag folder: not removing it")


def bag_from_dataset(images: Path, output: Path, labels: Path | None = None,
                     storage: str = "mcap", rate_hz: float = 10.0,
                     image_topic: str = "/camera/image",
                     labels_topic: str = "/camera/labels", frame_id: str = "camera",
                     encoding: str = "rgb8", compressed: str | None = None,
                     start_s: float = DEFAULT_START_S, limit: int | None = None,
                     meta: DatasetMeta | None = None, force: bool = False,
                     compress_storage: bool = False,
                     progress: Callable[[int], None] | None = None,
                     transform: Callable[[np.ndarray, int], np.ndarray] | None = None
                     ) -> BagFromDatasetResult:
    """Write the folder's images (and labels) into a new bag at `output`; `transform(rgb,
    index)` changes each frame before it is written (the robustness study's corruptions)."""
    if rate_hz <= 0:
        raise ValueError(f"--rate must be positive, got {rate_hz}")
    if encoding not in ENCODINGS:
        raise ValueError(f"--encoding must be one of {', '.join(ENCODINGS)}")
    if image_topic == labels_topic:
        raise ValueError("the image and label topics must differ")
    pairs = pair_files(images, labels)
    if limit is not None:
        pairs = pairs[:max(0, limit)]
    if not pairs:
        raise ValueError("no frames to write (--limit 0?)")
    if output.exists():
        if not force:
            raise FileExistsError(f"{output} already exists (pass --force to replace it)")
        remove_bag(output)
    meta = meta or DatasetMeta()
    started = time.monotonic()
    period_ns = round(1e9 / rate_hz)
    start_ns = round(start_s * 1e9)
    sizes: set[tuple[int, int]] = set()
    topic = f"{image_topic}/compressed" if compressed else image_topic
    with FrameBagWriter(output, storage, topic, labels_topic if labels else None, meta,
                        compressed, compress_storage) as writer:
        for i, pair in enumerate(pairs):
            rgb = read_rgb(pair.image)
            if transform is not None:
                rgb = transform(rgb, i)
            gt = None
            if pair.labels is not None:
                gt = read_labels(pair.labels)
                if gt.shape != rgb.shape[:2]:
                    raise ValueError(f"label {pair.labels} is {gt.shape[1]}x{gt.shape[0]} but "
                                     f"its image {pair.image.name} is {rgb.shape[1]}x"
                                     f"{rgb.shape[0]}")
                _check_label_values(gt, pair.labels, meta)
            sizes.add(rgb.shape[:2])
            writer.write_frame(rgb, start_ns + i * period_ns, gt, frame_id, encoding)
            if progress is not None:
                progress(i + 1)
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    return BagFromDatasetResult(output, len(pairs), labels is not None, meta,
                                time.monotonic() - started, size, topic,
                                labels_topic if labels else None, sizes)


def _check_label_values(labels: np.ndarray, path: Path, meta: DatasetMeta) -> None:
    if meta.num_classes is None:
        return
    top = int(labels.max())
    if top >= meta.num_classes and top != meta.ignore_id:
        values = np.unique(labels)
        bad = [int(v) for v in values if v >= meta.num_classes and v != meta.ignore_id]
        if bad:
            raise ValueError(f"label {path} holds ids {bad[:8]}, outside the "
                             f"{meta.num_classes} classes (0..{meta.num_classes - 1}) and not "
                             f"the ignore id {meta.ignore_id}")


__all__ = ["CAMVID_CLASSES", "CAMVID_VOID", "BagError", "BagFromDatasetResult",
           "FrameBagWriter", "bag_from_dataset", "camvid_label_folder", "looks_like_camvid",
           "pair_files"]
