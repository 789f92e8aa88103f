"""`textseg eval-offline BAG`: the replay's scoring with the backend called directly, no ROS.

Same frames, same checks, same metrics as `textseg replay`; comparing the two isolates what
ROS (DDS transport, message conversion, the node's threads) costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textseg.imaging import ImageRejected
from textseg.replay.bagio import BagError, BagSource, DatasetMeta
from textseg.replay.dataset import DEFAULT_IGNORE_ID
from textseg.replay.metrics import LabelValueError, distribution
from textseg.replay.progress import Progress
from textseg.replay.scoring import Scorer


@dataclass
class EvalSetup:
    """What both commands settle before the first frame: topics, classes, ignore id."""

    bag: Path
    model_path: Path
    class_names: tuple[str, ...]
    palette: tuple
    model_summary: str
    training_stage: str
    ignore_id: int
    ignore_source: str
    warnings: list[str] = field(default_factory=list)
    image_topic: str = ""
    labels_topic: str | None = None
    image_type: str = ""
    frame_count: int = 0
    storage: str = ""
    dataset: str | None = None

    def context(self) -> dict:
        return {"bag": str(self.bag), "storage": self.storage, "image_topic": self.image_topic,
                "image_type": self.image_type, "labels_topic": self.labels_topic,
                "dataset": self.dataset, "model": str(self.model_path),
                "model_summary": self.model_summary, "training_stage": self.training_stage,
                "class_names": list(self.class_names), "ignore_id": self.ignore_id,
                "ignore_id_source": self.ignore_source, "warnings": list(self.warnings)}


def resolve_ignore_id(requested: int | None, meta: DatasetMeta) -> tuple[int, str]:
    if requested is not None:
        if not 0 <= requested <= 255:
            raise ValueError(f"--ignore-id must be 0..255, got {requested}")
        return requested, "--ignore-id"
    if meta.ignore_id is not None:
        return meta.ignore_id, "the bag's metadata"
    return DEFAULT_IGNORE_ID, "default"


def settle(source: BagSource, model_path: Path, info, ignore_id: int | None) -> EvalSetup:
    """Check the bag's ground truth against the model; raise BagError when they cannot fit."""
    meta = source.meta
    ignore, ignore_source = resolve_ignore_id(ignore_id, meta)
    warnings = []
    k = info.num_classes
    if source.labels_topic is not None and meta.num_classes is not None:
        if meta.num_classes != k:
            raise BagError(
                f"the bag's ground truth has {meta.num_classes} classes "
                f"({', '.join(meta.class_names[:6])}{', ...' if meta.num_classes > 6 else ''}) "
                f"but the model has {k} ({', '.join(info.class_names[:6])}"
                f"{', ...' if k > 6 else ''}): scores would be meaningless; use a model trained "
                "for the bag's classes")
        if tuple(n.lower() for n in meta.class_names) != tuple(
                n.lower() for n in info.class_names):
            differ = [f"{i}: {a} / {b}" for i, (a, b) in
                      enumerate(zip(meta.class_names, info.class_names, strict=True))
                      if a.lower() != b.lower()]
            warnings.append("class names differ between the bag and the model (bag / model) "
                            f"at {'; '.join(differ[:5])}: scored by id")
    if source.labels_topic is not None and ignore < k:
        raise BagError(f"the ignore id {ignore} (from {ignore_source}) is one of the model's "
                       f"{k} classes (0..{k - 1}); pass the id the labels use for 'unlabelled' "
                       "with --ignore-id")
    if source.labels_topic is None:
        warnings.append("the bag has no ground-truth topic: coverage and latency only")
    summary = (f"{info.architecture}, dataset {info.dataset}, stage {info.training_stage}, "
               f"{k} classes")
    return EvalSetup(source.path, model_path, tuple(info.class_names), tuple(info.palette),
                     summary, info.training_stage, ignore, ignore_source, warnings,
                     source.image_topic, source.labels_topic, source.image_type,
                     source.frame_count, source.storage, meta.dataset)


@dataclass
class OfflineRun:
    setup: EvalSetup
    scorer: Scorer
    backend_description: str
    wall_s: float
    threads: int
    limit: int | None
    reference_indices: np.ndarray | None = None  # the replay's answered frames, when compared

    def figures(self) -> dict:
        data = self.scorer.figures()
        data["throughput"] = {
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.scorer.answered_count / self.wall_s, 3) if self.wall_s else None,
        }
        return data


def evaluate_offline(bag: str | Path, model: str | Path = "", backend: str = "auto",
                     threads: int = 0, image_topic: str | None = None,
                     labels_topic: str | None = None, ignore_id: int | None = None,
                     limit: int | None = None, strip_rows: int = 4,
                     frames_log: Path | None = None, show_progress: bool = True,
                     only_indices: np.ndarray | None = None, label: str = "eval-offline",
                     on_frame: Callable[[int], None] | None = None) -> OfflineRun:
    """Stream the bag through the backend and score it. `only_indices` (sorted frame indices)
    restricts scoring to those frames, e.g. the ones a replay got answers for; `on_frame`
    is called with the number of frames seen after each one (benchmarks sample memory)."""
    from textseg.engine import BackendOptions, default_model_path, load_backend

    model_path = Path(model) if str(model) else default_model_path()
    with BagSource(bag, image_topic, labels_topic) as source:
        runner = load_backend(model_path, BackendOptions(backend=backend, threads=threads))
        try:
            setup = settle(source, model_path, runner.info, ignore_id)
            total = source.frame_count if limit is None else min(limit, source.frame_count)
            scorer = Scorer(setup.class_names, setup.palette, setup.ignore_id, total,
                            strip_rows, frames_log)
            progress = Progress(label, total, enabled=show_progress)
            started = time.perf_counter()
            try:
                for frame in source.frames(limit):
                    scorer.seen()
                    if only_indices is not None and not _contains(only_indices, frame.index):
                        continue
                    if frame.problem is not None:
                        scorer.skip(frame, *frame.problem)
                    else:
                        _score_one(runner, scorer, frame)
                    progress.update(scorer.frames_seen, _note(scorer))
                    if on_frame is not None:
                        on_frame(scorer.frames_seen)
                wall = time.perf_counter() - started
            except BaseException:
                scorer.abort()
                raise
            finally:
                progress.close()
            scorer.close()
        finally:
            runner.close()
    return OfflineRun(setup, scorer, runner.description, wall, threads, limit)


def _score_one(runner, scorer: Scorer, frame) -> None:
    start = time.perf_counter()
    try:
        rgb = frame.rgb()
    except ImageRejected as exc:
        scorer.skip(frame, exc.reason, str(exc))
        return
    decoded = time.perf_counter()
    labels = runner.infer(rgb).labels
    done = time.perf_counter()
    if labels.shape != rgb.shape[:2]:
        scorer.skip(frame, "prediction_size", f"prediction {labels.shape} for a frame of "
                    f"{rgb.shape[:2]}")
        return
    try:
        scorer.answered(frame.index, frame.stamp, labels, frame.labels, done - start,
                        inference_s=done - decoded, rgb=rgb)
    except LabelValueError as exc:
        raise BagError(str(exc)) from None


def _contains(sorted_values: np.ndarray, value: int) -> bool:
    i = int(np.searchsorted(sorted_values, value))
    return i < sorted_values.size and int(sorted_values[i]) == value


def _note(scorer: Scorer) -> str:
    s = scorer.confusion.summary()
    parts = []
    if scorer.scored:
        parts.append(f"mIoU {s.miou * 100:5.2f}")
    if scorer.skipped:
        parts.append(f"skipped {sum(scorer.skipped.values())}")
    return "  ".join(parts)


def compare(replay_index: np.ndarray, replay_crc: np.ndarray, replay_latency: np.ndarray,
            offline: OfflineRun, replay_miou: float | None) -> dict:
    """Replay vs offline on the same frames: mIoU, identical predictions, ROS overhead.

    The ROS overhead of a frame is its replay latency (publish -> labels back, through the
    node) minus its offline inference time (backend.infer alone), and also minus its offline
    decode + inference time."""
    index, crc, per_frame, inference = offline.scorer.answered_arrays()
    common, in_replay, in_offline = np.intersect1d(replay_index, index, assume_unique=True,
                                                   return_indices=True)
    identical = int(np.count_nonzero(replay_crc[in_replay] == crc[in_offline]))
    replay = replay_latency[in_replay]
    infer = inference[in_offline] if inference is not None else np.zeros(0)
    offline_miou = offline.scorer.confusion.summary().miou
    difference = (None if replay_miou is None or not np.isfinite(offline_miou)
                  else round((replay_miou - offline_miou) * 100, 4))
    return {
        "frames_compared": int(common.size),
        "identical_predictions": identical,
        "replay_miou": replay_miou,
        "offline_miou": None if not np.isfinite(offline_miou) else round(offline_miou, 6),
        "miou_difference_points": difference,
        "replay_latency_ms": _ms(distribution(replay)),
        "offline_inference_ms": _ms(distribution(infer)),
        "offline_per_frame_ms": _ms(distribution(per_frame[in_offline])),
        "ros_overhead_vs_inference_ms": _ms(distribution(replay - infer) if infer.size
                                            else distribution(np.zeros(0))),
        "ros_overhead_vs_offline_frame_ms": _ms(distribution(replay - per_frame[in_offline])),
        "offline_fps": offline.figures()["throughput"]["fps"],
    }


def _ms(dist: dict) -> dict:
    return {k: (round(v * 1000, 3) if isinstance(v, float) else v) for k, v in dist.items()}
