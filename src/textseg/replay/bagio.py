"""Stream camera frames, and the ground-truth labels that belong to them, out of a ROS 2 bag.

Reading goes through `rosbags` (pure Python, sqlite3 and MCAP, no ROS install). Frames come
out one at a time in the bag's order; a label image is matched to its frame by header stamp
within a small look-ahead window (a few frames), so memory does not grow with the bag.

Every problem with the bag as a whole (missing, corrupt or truncated file, unknown or missing
topic, wrong message type, label images in another encoding) raises `BagError` with a message
naming it; a single bad frame is handed out with `Frame.problem` set, to be counted and skipped.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textseg.imaging import (
    ImageRejected,
    check_image_header,
    compressed_header,
    compressed_to_rgb,
    image_to_rgb,
)
from textseg.ros_compat import bag_typestore, bag_version, current_distro

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
LABEL_ENCODINGS = ("mono8", "8UC1")
STORAGES = ("mcap", "sqlite3")  # the rosbag2 storage plugins a bag is written with
# Keys this project writes into the bag's metadata.yaml `custom_data` (all string values).
META_PREFIX = "textseg."
# Words that mark an Image topic as ground truth rather than a camera.
LABEL_WORDS = ("label", "semantic", "segment", "annot", "ground_truth", "groundtruth", "gt")

Stamp = tuple[int, int]


class BagError(ValueError):
    """The bag cannot be used as asked; the message says why and what to do."""


def _typestore():
    """The message definitions of this process's ROS 2 distro (textseg.ros_compat)."""
    return bag_typestore()


def stamp_ns(stamp: Stamp) -> int:
    return stamp[0] * 1_000_000_000 + stamp[1]


def format_stamp(stamp: Stamp) -> str:
    return f"{stamp[0]}.{stamp[1]:09d}"


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


@dataclass
class DatasetMeta:
    """What the bag says about its ground truth (from `custom_data`; all optional)."""

    dataset: str | None = None
    class_names: tuple[str, ...] | None = None
    ignore_id: int | None = None
    image_topic: str | None = None
    labels_topic: str | None = None

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names else None

    def to_custom_data(self) -> dict[str, str]:
        """String values: class_names as a JSON list, the rest as plain text."""
        out = {}
        if self.class_names is not None:
            out[META_PREFIX + "class_names"] = json.dumps(list(self.class_names))
        for key in ("dataset", "ignore_id", "image_topic", "labels_topic"):
            value = getattr(self, key)
            if value is not None:
                out[META_PREFIX + key] = str(value)
        return out

    @classmethod
    def from_custom_data(cls, custom: dict | None, where: str) -> DatasetMeta:
        meta = cls()
        for key, value in (custom or {}).items():
            if not str(key).startswith(META_PREFIX):
                continue
            name, value = str(key)[len(META_PREFIX):], str(value)
            if name == "class_names":
                try:
                    names = json.loads(value)
                except ValueError:
                    names = None
                if (not isinstance(names, list) or not names
                        or not all(isinstance(n, str) for n in names)):
                    raise BagError(f"{where}: custom_data {key} must be a JSON list of class "
                                   f"names, got {value!r}")
                meta.class_names = tuple(names)
            elif name == "ignore_id":
                if not value.strip().isdigit() or not 0 <= int(value) <= 255:
                    raise BagError(f"{where}: custom_data {key} must be 0..255, got {value!r}")
                meta.ignore_id = int(value)
            elif name in ("dataset", "image_topic", "labels_topic"):
                setattr(meta, name, value)
        return meta


@dataclass
class Frame:
    """One camera message and (when the bag has them) its ground-truth labels."""

    index: int  # position among the bag's camera messages
    log_ns: int  # the bag's receive time
    stamp: Stamp  # header stamp (sec, nanosec)
    frame_id: str
    msgtype: str  # IMAGE_TYPE or COMPRESSED_TYPE
    raw: bytes  # the serialized message as stored (CDR), publishable as is
    msg: object = field(repr=False)  # rosbags message; msg.data is a numpy view of `raw`
    labels: np.ndarray | None = field(default=None, repr=False)  # uint8 [H, W]
    problem: tuple[str, str] | None = None  # (reason, message): skip this frame
    matched: bool = False  # its label message was found (even if unusable)

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) from the header, None for undecodable compressed data."""
        if self.msgtype == IMAGE_TYPE:
            return int(self.msg.height), int(self.msg.width)
        try:
            _, width, height = compressed_header(self.msg.data)
        except ImageRejected:
            return None
        return height, width

    def rgb(self) -> np.ndarray:
        """Decode to uint8 RGB [H, W, 3]; raises ImageRejected (with .reason) when it cannot."""
        m = self.msg
        if self.msgtype == IMAGE_TYPE:
            return image_to_rgb(m.encoding, m.height, m.width, m.step, m.data)
        return compressed_to_rgb(m.data, format_field=str(getattr(m, "format", "")))


def _check_frame(msgtype: str, msg) -> tuple[str, str] | None:
    """Header-level checks (no decoding): the same the node runs before accepting a frame."""
    try:
        if msgtype == IMAGE_TYPE:
            check_image_header(msg.encoding, msg.height, msg.width, msg.step, len(msg.data))
        else:
            compressed_header(msg.data)
    except ImageRejected as exc:
        return exc.reason, str(exc)
    return None


def label_array(msg) -> np.ndarray:
    """uint8 [H, W] class ids of a mono8 sensor_msgs/Image (row padding honoured)."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, np.uint8).reshape(-1)
    if height <= 0 or width <= 0 or step < width or data.size != height * step:
        raise ImageRejected("label_data", f"label image {width}x{height} step {step} has "
                            f"{data.size} bytes, expected {height * step}")
    return data.reshape(height, step)[:, :width]


def _is_label_name(topic: str) -> bool:
    parts = topic.lower().replace("-", "_").split("/")
    return any(word in part for part in parts for word in LABEL_WORDS if word != "gt") or any(
        part == "gt" or part.startswith("gt_") or part.endswith("_gt") for part in parts)


class BagSource:
    """A ROS 2 bag opened for evaluation: topics resolved and checked, frames streamed.

    image_topic / labels_topic: None = from the bag's textseg metadata, else guessed from the
    topic types and names (a single camera topic; an Image topic named like labels). Pass
    labels_topic="" to ignore ground truth.
    """

    def __init__(self, path: str | Path, image_topic: str | None = None,
                 labels_topic: str | None = None, lookahead: int = 8,
                 lookahead_ns: int = 2_000_000_000) -> None:
        self.path = Path(path)
        self.lookahead = max(1, lookahead)
        self.lookahead_ns = lookahead_ns
        self._reader = None
        self._open(image_topic, labels_topic)
        # Counters filled while streaming (bag-level facts, not per-frame skips).
        self.labels_without_frame = 0
        self.labels_undecodable = 0
        self.messages_read = 0

    # --- opening -------------------------------------------------------------------------

    def _open(self, image_topic: str | None, labels_topic: str | None) -> None:
        from rosbags.rosbag2 import Reader

        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            files = sorted(p.name for p in self.path.iterdir())[:5]
            raise BagError(f"{self.path} is a folder without metadata.yaml, so not a ROS 2 bag "
                           f"(holds: {', '.join(files) or 'nothing'}); give the bag folder, or "
                           "the .mcap/.db3 file itself")
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as exc:  # rosbags raises many kinds for damaged files
            hint = ""
            if "end magic" in str(exc) or "footer" in str(exc).lower():
                hint = ("; an MCAP file cut short (recording interrupted) has no footer: "
                        "`mcap recover` (the MCAP command-line tool) can rebuild one")
            raise BagError(f"cannot open {self.path} as a ROS 2 bag: {_describe(exc)} "
                           f"(corrupt, truncated or not a bag){hint}") from None
        self._reader = reader
        try:
            self.meta = self._read_meta()
            self.topics = {c.topic: TopicInfo(c.topic, c.msgtype, c.msgcount)
                           for c in reader.connections}
            self.image_topic = self._resolve_image_topic(image_topic)
            self.labels_topic = self._resolve_labels_topic(labels_topic)
        except BaseException:
            self.close()
            raise
        self._connections = {c.topic: c for c in reader.connections
                             if c.topic in (self.image_topic, self.labels_topic)}
        self.image_type = self.topics[self.image_topic].msgtype
        self.frame_count = sum(c.msgcount for c in reader.connections
                               if c.topic == self.image_topic)
        self.storage = ("mcap" if self.path.suffix == ".mcap" else "sqlite3"
                        if self.path.suffix == ".db3" else self._storage_identifier())

    def _metadata_yaml(self) -> dict:
        if not self.path.is_dir():
            return {}
        import yaml

        try:
            document = yaml.safe_load((self.path / "metadata.yaml").read_text())
            return document.get("rosbag2_bagfile_information") or {}
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            return {}  # rosbags opened it, so only our extra reading failed

    def _storage_identifier(self) -> str:
        return str(self._metadata_yaml().get("storage_identifier", "unknown"))

    def _read_meta(self) -> DatasetMeta:
        return DatasetMeta.from_custom_data(self._metadata_yaml().get("custom_data"),
                                            str(self.path))

    def describe_topics(self) -> str:
        return ", ".join(f"{t.name} ({t.msgtype}, {t.count})" for t in self.topics.values())

    def _resolve_image_topic(self, requested: str | None) -> str:
        if requested:
            return self._check_topic(requested, CAMERA_TYPES, "--image-topic")
        if self.meta.image_topic and self.meta.image_topic in self.topics:
            return self._check_topic(self.meta.image_topic, CAMERA_TYPES, "the bag's metadata")
        cameras = [t.name for t in self.topics.values()
                   if t.msgtype in CAMERA_TYPES and not _is_label_name(t.name)]
        if len(cameras) == 1:
            return cameras[0]
        if not cameras:
            raise BagError(f"{self.path} has no camera topic (sensor_msgs/msg/Image or "
                           f"CompressedImage); its topics: {self.describe_topics() or 'none'}")
        raise BagError(f"{self.path} has several camera topics ({', '.join(cameras)}): "
                       "choose one with --image-topic")

    def _resolve_labels_topic(self, requested: str | None) -> str | None:
        if requested == "":
            return None
        if requested:
            topic = self._check_topic(requested, (IMAGE_TYPE,), "--labels-topic")
        elif self.meta.labels_topic and self.meta.labels_topic in self.topics:
            topic = self._check_topic(self.meta.labels_topic, (IMAGE_TYPE,),
                                      "the bag's metadata")
        else:
            candidates = [t.name for t in self.topics.values() if t.msgtype == IMAGE_TYPE
                          and t.name != self.image_topic and _is_label_name(t.name)]
            if not candidates:
                return None
            if len(candidates) > 1:
                raise BagError(f"{self.path} has several label topics ({', '.join(candidates)})"
                               ": choose one with --labels-topic")
            topic = candidates[0]
        if topic == self.image_topic:
            raise BagError(f"the labels topic and the camera topic are both {topic}")
        return topic

    def _check_topic(self, topic: str, types: tuple[str, ...], source: str) -> str:
        if topic not in self.topics:
            raise BagError(f"topic {topic} (from {source}) is not in {self.path}; its topics: "
                           f"{self.describe_topics() or 'none'}")
        msgtype = self.topics[topic].msgtype
        if msgtype not in types:
            raise BagError(f"topic {topic} has type {msgtype}, expected "
                           f"{' or '.join(types)}")
        return topic

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - closing a damaged bag must not mask its error
                pass

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- streaming -----------------------------------------------------------------------

    def _messages(self) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, raw CDR) in the bag's order; damage becomes a BagError."""
        if self._reader is None:
            raise BagError(f"{self.path} is closed")
        connections = list(self._connections.values())
        iterator = self._reader.messages(connections=connections)
        while True:
            try:
                connection, log_ns, raw = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # anything rosbags raises mid-file means damage
                raise BagError(f"{self.path} is corrupt or truncated: reading failed after "
                               f"{self.messages_read} messages ({_describe(exc)})") from None
            self.messages_read += 1
            yield connection.topic, log_ns, raw if isinstance(raw, bytes) else bytes(raw)

    def frames(self, limit: int | None = None) -> Iterator[Frame]:
        """Camera frames in bag order with their labels (None when there are none)."""
        store = _typestore()
        waiting: deque[Frame] = deque()  # frames whose labels may still come
        early: OrderedDict[Stamp, np.ndarray | tuple[str, str]] = OrderedDict()
        recent: OrderedDict[Stamp, None] = OrderedDict()  # stamps of the last frames
        emitted = 0
        index = 0

        def ready(now_ns: int, flush: bool) -> Iterator[Frame]:
            nonlocal emitted
            while waiting:
                head = waiting[0]
                if not (flush or head.labels is not None or head.matched
                        or self.labels_topic is None or len(waiting) > self.lookahead
                        or now_ns - head.log_ns > self.lookahead_ns):
                    return
                waiting.popleft()
                if limit is not None and emitted >= limit:
                    return
                emitted += 1
                yield head

        for topic, log_ns, raw in self._messages():
            if limit is not None and emitted >= limit:
                return
            if topic == self.image_topic:
                frame = self._frame(store, index, log_ns, raw)
                index += 1
                if frame.msg is not None:
                    if frame.problem is None and frame.stamp in recent:
                        frame.problem = ("duplicate_stamp", "header stamp "
                                         f"{format_stamp(frame.stamp)} repeats an earlier frame's"
                                         " (replies could not be told apart)")
                    recent[frame.stamp] = None
                    while len(recent) > 4 * self.lookahead:
                        recent.popitem(last=False)
                    found = early.pop(frame.stamp, None)
                    if found is not None:
                        self._attach(frame, found)
                waiting.append(frame)
            else:
                labels = self._labels(store, raw)
                if labels is None:
                    continue
                stamp, value = labels
                target = next((f for f in waiting if f.stamp == stamp and not f.matched),
                              None)
                if target is not None:
                    self._attach(target, value)
                else:
                    early[stamp] = value
                    while len(early) > 2 * self.lookahead:
                        early.popitem(last=False)
                        self.labels_without_frame += 1
            yield from ready(log_ns, flush=False)
        yield from ready(0, flush=True)
        self.labels_without_frame += len(early)

    def _frame(self, store, index: int, log_ns: int, raw: bytes) -> Frame:
        try:
            msg = store.deserialize_cdr(raw, self.image_type)
            stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            frame_id = str(msg.header.frame_id)
        except Exception as exc:  # noqa: BLE001 - a garbled message is one bad frame
            return Frame(index, log_ns, (0, 0), "", self.image_type, raw, None,
                         problem=("cdr", f"message cannot be deserialized: {_describe(exc)}"))
        return Frame(index, log_ns, stamp, frame_id, self.image_type, raw, msg,
                     problem=_check_frame(self.image_type, msg))

    def _labels(self, store, raw: bytes) -> tuple[Stamp, np.ndarray | tuple[str, str]] | None:
        try:
            msg = store.deserialize_cdr(raw, IMAGE_TYPE)
        except Exception:  # noqa: BLE001 - counted; the frame is then scored without labels
            self.labels_undecodable += 1
            return None
        stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
        if msg.encoding not in LABEL_ENCODINGS:
            raise BagError(f"label topic {self.labels_topic} carries {msg.encoding!r} images; "
                           f"ground truth must be class ids ({' or '.join(LABEL_ENCODINGS)}); "
                           "pass --labels-topic '' to replay without ground truth")
        try:
            return stamp, label_array(msg)
        except ImageRejected as exc:
            return stamp, ("label_data", str(exc))

    @staticmethod
    def _attach(frame: Frame, labels: np.ndarray | tuple[str, str]) -> None:
        frame.matched = True
        if frame.problem is not None:
            return
        if isinstance(labels, tuple):
            frame.problem = labels
            return
        size = frame.size
        if size is not None and labels.shape != size:
            frame.problem = ("label_size", f"labels {labels.shape[1]}x{labels.shape[0]} "
                             f"differ from the image {size[1]}x{size[0]}")
            return
        frame.labels = labels


class RawBagWriter:
    """A new bag written from serialized messages, topic by topic; a context manager.

    The bag is written into a hidden temporary folder beside `path` and renamed into place
    when closed without error, so a half-written bag never appears under its name (and is
    removed on error). `path` must not exist.
    """

    def __init__(self, path: str | Path, storage: str = "mcap",
                 custom_data: dict[str, str] | None = None,
                 compress_storage: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists (pass --force to replace a bag)")
        self.storage = storage
        self.custom_data = dict(custom_data or {})
        self.compress_storage = compress_storage
        self.counts: dict[str, int] = {}
        self._connections: dict[str, object] = {}
        self._writer = None
        self._tmp: Path | None = None

    def __enter__(self) -> RawBagWriter:
        import shutil
        import tempfile

        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
            # The metadata version this distro's rosbag2 writes, so its `ros2 bag` opens it.
            writer = Writer(self._tmp / self.path.name, version=bag_version(),
                            storage_plugin=plugin)
            if self.compress_storage:
                mode = (CompressionMode.STORAGE if self.storage == "mcap"
                        else CompressionMode.MESSAGE)
                writer.set_compression(mode, CompressionFormat.ZSTD)
            for key, value in self.custom_data.items():
                writer.set_custom_data(key, value)
            writer.open()
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self._writer = writer
        return self

    def add_topic(self, topic: str, msgtype: str) -> None:
        self._connections[topic] = self._writer.add_connection(topic, msgtype,
                                                               typestore=_typestore())
        self.counts[topic] = 0

    def write(self, topic: str, log_ns: int, raw: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            raise ValueError(f"no topic {topic} in the bag being written (add_topic first)")
        self._writer.write(connection, int(log_ns), raw)
        self.counts[topic] += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        writer, self._writer = self._writer, None
        try:
            if writer is not None and exc_type is None:
                writer.close()
                _name_the_distro(self._tmp / self.path.name / "metadata.yaml")
                (self._tmp / self.path.name).rename(self.path)
            elif writer is not None:
                try:
                    writer.abort()
                except Exception:  # noqa: BLE001 - the original error matters, not this one
                    pass
        finally:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)


def _name_the_distro(metadata: Path) -> None:
    """rosbags writes `ros_distro: rosbags`; `ros2 bag info` shows that field, so it names the
    distro the bag was written for (the one whose metadata version it carries)."""
    import re

    text = metadata.read_text(encoding="utf-8")
    metadata.write_text(re.sub(r"(?m)^(\s*ros_distro:) rosbags$", rf"\1 {current_distro()}", text),
                        encoding="utf-8")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
