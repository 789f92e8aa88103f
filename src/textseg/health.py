"""Run-time health of the labels: is the model still seeing frames like those it was made for?

A model carries a reference (metadata key `health_reference`), computed from its own outputs on
frames of its training data when it is exported (or on the frames given to `textseg import`,
`textseg quantize` or `textseg health-reference MODEL FRAMES`): the distribution of its
per-pixel confidence (max class probability, in 16 bins), the share of pixels of each class,
its mean confidence, and three statistics of the frames themselves: sharpness (mean
|Laplacian|), brightness and the share of clipped pixels. At run time each frame is summarised
the same way (labels and confidence from every 4th pixel each way, brightness and the clipped
share from every 8th input pixel, sharpness on the grey frame at 180 rows), and
`HealthMonitor` compares a rolling window of frames with the reference:

    outputs   = 1 - (TV(confidence histograms) + TV(class shares)) / 2  (TV: total variation)
    uncertain = 1 - 6 * (share of pixels with confidence < 0.5 above the reference's)
    inputs    = 1 - 0.3 * sharpness lost - 0.1 * max(0, brightness off by > 1.5 reference stds)
                  - 0.5 * clipped share above the reference's
    score     = max(0, min(outputs, uncertain, inputs))

The weights (HealthWeights) were chosen on corrupted CamVid *training* frames
(scripts/calibrate_health.py, training/results/health_calibration.json), never on the val
frames the validation reports.

1 is a window that looks like the reference. Noise, darkness and glare move the confidence down
and the class mix away from the street's; blur costs labels before it costs confidence, which
the sharpness sees. A patch the model cannot read (dirt on the lens, a raindrop) leaves the
class mix and the frame's statistics nearly as they were, but its pixels are the ones where no
class holds half the probability: the uncertain share grows with the area lost. Below
`warn_below` the level is WARN, below `error_below` ERROR. Two failures of the camera itself are
flagged whatever the model says: a black stream (mean brightness under `black_below`) and a
frozen one (`frozen_frames` consecutive frames with identical pixels).

What it cannot see: a model that is confidently wrong in the reference's proportions, and a
new domain whose statistics happen to resemble the reference (docs/node.md).
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

HEALTH_KEY = "health_reference"
CONFIDENCE_BINS = 16
UNCERTAIN_BINS = CONFIDENCE_BINS // 2  # the bins of confidence < 0.5: no class holds half
PIXEL_STRIDE = 4  # statistics from every 4th pixel each way: 1/16 of the frame
INPUT_STRIDE = 8  # brightness and the frozen-frame digest from every 8th input pixel
# Sharpness is measured on the grey frame resized to this many rows (INTER_AREA): the mean
# |Laplacian| depends on the resolution, and a camera need not have the reference's.
SHARPNESS_ROWS = 180
SATURATED = 250  # an input value this high is clipped: glare, over-exposure
MIN_BRIGHTNESS_STD = 10.0  # grey levels: a reference of few frames has a tiny spread
STALE, STALE_AFTER_S = 3, 5.0  # diagnostic_msgs STALE: no frame judged for this long
OK, WARN, ERROR = 0, 1, 2  # the diagnostic_msgs levels
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class HealthReferenceError(ValueError):
    """A stored reference that cannot be read."""


@dataclass(frozen=True)
class FrameStats:
    confidence_hist: np.ndarray  # float64 [CONFIDENCE_BINS], sums to 1
    class_share: np.ndarray  # float64 [num_classes], sums to 1 (labels in range)
    mean_confidence: float | None  # 0..1; None: the model has no confidence output
    brightness: float  # mean input value, 0..255
    sharpness: float  # mean |Laplacian| of the grey frame at SHARPNESS_ROWS rows
    digest: int  # CRC of the subsampled input: equal for identical frames
    saturated: float = 0.0  # share of input pixels clipped white (any channel >= 250)


def frame_stats(rgb: np.ndarray, labels: np.ndarray, confidence: np.ndarray | None,
                num_classes: int) -> FrameStats:
    """One frame's summary: `labels` (uint8 class ids) and `confidence` (uint8, max
    probability x 255; None for a model without one: all in the lowest bin) as the model
    gave them, `rgb` the frame it saw."""
    ids = labels[::PIXEL_STRIDE, ::PIXEL_STRIDE].ravel()
    counts = np.bincount(ids, minlength=num_classes)[:num_classes]
    share = counts / max(1, int(counts.sum()))  # ids outside the classes (255) left out
    if confidence is None:
        hist, mean_confidence = np.zeros(CONFIDENCE_BINS), None
    else:
        conf = confidence[::PIXEL_STRIDE, ::PIXEL_STRIDE].ravel()
        hist = np.bincount(conf.astype(np.intp) * CONFIDENCE_BINS // 256,
                           minlength=CONFIDENCE_BINS)[:CONFIDENCE_BINS] / max(1, conf.size)
        mean_confidence = float(conf.mean()) / 255.0 if conf.size else 0.0
    small = np.ascontiguousarray(rgb[::INPUT_STRIDE, ::INPUT_STRIDE])
    saturated = float((small.max(axis=-1) >= SATURATED).mean()) if small.size else 0.0
    return FrameStats(hist, share, mean_confidence,
                      float(small.mean()) if small.size else 0.0, _sharpness(rgb),
                      zlib.crc32(small.tobytes()), saturated)


def _sharpness(rgb: np.ndarray) -> float:
    """Mean |Laplacian| of the grey frame at SHARPNESS_ROWS rows, whatever its resolution."""
    height, width = rgb.shape[:2]
    if not height or not width:
        return 0.0
    size = (max(1, round(width * SHARPNESS_ROWS / height)), SHARPNESS_ROWS)
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_16S)).mean())


@dataclass(frozen=True)
class HealthReference:
    confidence_hist: tuple[float, ...]
    class_share: tuple[float, ...]
    mean_confidence: float
    sharpness: float
    brightness: float
    brightness_std: float  # over the reference frames
    frames: int
    source: str = ""  # which frames it came from
    # share of clipped input pixels; None in references written before it was recorded
    saturated: float | None = None

    @classmethod
    def from_frames(cls, stats: list[FrameStats], source: str = "") -> HealthReference:
        if not stats:
            raise ValueError("a health reference needs at least one frame")
        if any(s.mean_confidence is None for s in stats):
            raise ValueError("a health reference needs the model's confidence output")
        brightness = [s.brightness for s in stats]
        return cls(tuple(float(v) for v in np.mean([s.confidence_hist for s in stats], 0)),
                   tuple(float(v) for v in np.mean([s.class_share for s in stats], 0)),
                   float(np.mean([s.mean_confidence for s in stats])),
                   float(np.mean([s.sharpness for s in stats])), float(np.mean(brightness)),
                   float(np.std(brightness)), len(stats), source,
                   float(np.mean([s.saturated for s in stats])))

    def to_metadata(self) -> str:
        return json.dumps({"version": 1, "confidence_bins": CONFIDENCE_BINS,
                           "confidence_hist": [round(v, 6) for v in self.confidence_hist],
                           "class_share": [round(v, 6) for v in self.class_share],
                           "mean_confidence": round(self.mean_confidence, 6),
                           "sharpness": round(self.sharpness, 4),
                           "brightness": round(self.brightness, 3),
                           "brightness_std": round(self.brightness_std, 3),
                           "frames": self.frames, "source": self.source,
                           **({} if self.saturated is None
                              else {"saturated": round(self.saturated, 6)})})

    @classmethod
    def from_metadata(cls, text: str, num_classes: int) -> HealthReference:
        try:
            data = json.loads(text)
            reference = cls(tuple(float(v) for v in data["confidence_hist"]),
                            tuple(float(v) for v in data["class_share"]),
                            float(data["mean_confidence"]), float(data["sharpness"]),
                            float(data["brightness"]), float(data["brightness_std"]),
                            int(data["frames"]), str(data.get("source", "")),
                            None if data.get("saturated") is None
                            else float(data["saturated"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HealthReferenceError(f"the model's {HEALTH_KEY} cannot be read: {exc}") \
                from None
        if len(reference.confidence_hist) != CONFIDENCE_BINS:
            raise HealthReferenceError(f"{HEALTH_KEY} has {len(reference.confidence_hist)} "
                                       f"confidence bins, expected {CONFIDENCE_BINS}")
        if len(reference.class_share) != num_classes:
            raise HealthReferenceError(f"{HEALTH_KEY} has shares of "
                                       f"{len(reference.class_share)} classes, the model "
                                       f"{num_classes}")
        return reference


def read_health_reference(metadata: dict[str, str], num_classes: int
                          ) -> HealthReference | None:
    text = metadata.get(HEALTH_KEY)
    return None if not text else HealthReference.from_metadata(text, num_classes)


@dataclass(frozen=True)
class HealthThresholds:
    window: int = 30  # frames compared with the reference
    # both drawn from corrupted training frames by scripts/calibrate_health.py (its RULE)
    warn_below: float = 0.82
    error_below: float = 0.6
    black_below: float = 12.0  # mean brightness (0..255) of a black stream
    frozen_frames: int = 10  # identical frames in a row: the camera is stuck


@dataclass(frozen=True)
class HealthWeights:
    """How much each departure of the input from the reference costs the score (`inputs`);
    chosen on corrupted training frames by scripts/calibrate_health.py."""
    sharpness: float = 0.3  # per share of the reference's sharpness lost (blur, fog)
    brightness: float = 0.1  # per reference std of brightness beyond the margin
    brightness_margin: float = 1.5  # reference stds of brightness that cost nothing
    saturation: float = 0.5  # per share of clipped pixels above the reference's (glare)
    uncertain: float = 6.0  # per share of pixels with confidence < 0.5 above the reference's


@dataclass(frozen=True)
class HealthAssessment:
    level: int
    message: str
    score: float | None  # None: no reference, or no frame yet
    values: dict[str, str] = field(default_factory=dict)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def uncertain_share(confidence_hist) -> float:
    """The share of pixels whose confidence is under 0.5 (no class holds half)."""
    return float(np.sum(np.asarray(confidence_hist)[:UNCERTAIN_BINS]))


@dataclass(frozen=True)
class _WindowMeans:
    """The window's frames averaged, once per judgement: the score and the values read it."""
    confidence_hist: np.ndarray | None  # None: a frame without a confidence output
    class_share: np.ndarray
    mean_confidence: float | None
    sharpness: float
    brightness: float
    saturated: float


def _total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


class HealthMonitor:
    """The rolling window of one camera's frames, judged against the model's reference."""

    def __init__(self, reference: HealthReference | None,
                 thresholds: HealthThresholds = HealthThresholds(),
                 weights: HealthWeights = HealthWeights()) -> None:
        self.reference = reference
        self.thresholds = thresholds
        self.weights = weights
        self._frames: deque[FrameStats] = deque(maxlen=thresholds.window)
        self._same_in_a_row = 0
        self._last_digest: int | None = None
        if reference is not None:
            self._ref_hist = np.asarray(reference.confidence_hist)
            self._ref_share = np.asarray(reference.class_share)
            self._ref_uncertain = uncertain_share(self._ref_hist)

    def reset(self) -> None:
        """Start a new window: after a gap in the stream the frames before it describe
        another scene, and a frame equal to one from before the gap is no frozen stream."""
        self._frames.clear()
        self._same_in_a_row = 0
        self._last_digest = None

    def add(self, stats: FrameStats) -> None:
        self._same_in_a_row = (self._same_in_a_row + 1 if stats.digest == self._last_digest
                               else 1)
        self._last_digest = stats.digest
        self._frames.append(stats)

    def _means(self) -> _WindowMeans:
        frames = self._frames
        with_confidence = all(s.mean_confidence is not None for s in frames)
        hist = np.mean([s.confidence_hist for s in frames], 0) if with_confidence else None
        return _WindowMeans(hist, np.mean([s.class_share for s in frames], 0),
                            float(np.mean([s.mean_confidence for s in frames]))
                            if with_confidence else None,
                            float(np.mean([s.sharpness for s in frames])),
                            float(np.mean([s.brightness for s in frames])),
                            float(np.mean([s.saturated for s in frames])))

    def score(self) -> float | None:
        if self.reference is None or not self._frames:
            return None
        return self._score(self._means())

    def _score(self, window: _WindowMeans) -> float:
        ref, w = self.reference, self.weights
        uncertain = 1.0
        if window.confidence_hist is None:  # no confidence output: its shares alone
            outputs = 1.0 - _total_variation(window.class_share, self._ref_share)
        else:
            outputs = 1.0 - 0.5 * (_total_variation(window.confidence_hist, self._ref_hist)
                                   + _total_variation(window.class_share, self._ref_share))
            excess = uncertain_share(window.confidence_hist) - self._ref_uncertain
            uncertain = 1.0 - w.uncertain * max(0.0, excess)
        sharpness_lost = (max(0.0, 1.0 - window.sharpness / ref.sharpness)
                          if ref.sharpness > 0 else 0.0)
        brightness_off = (abs(window.brightness - ref.brightness)
                          / max(ref.brightness_std, MIN_BRIGHTNESS_STD))
        inputs = (1.0 - w.sharpness * sharpness_lost
                  - w.brightness * max(0.0, brightness_off - w.brightness_margin))
        if ref.saturated is not None:
            inputs -= w.saturation * max(0.0, window.saturated - ref.saturated)
        return max(0.0, min(outputs, uncertain, inputs))  # 0: nothing like the reference

    def assess(self) -> HealthAssessment:
        t = self.thresholds
        if not self._frames:
            return HealthAssessment(OK, "no frame yet", None)
        latest = self._frames[-1]
        window = self._means()
        score = None if self.reference is None else self._score(window)
        values = {"health score": _text(score),
                  "health window (frames)": str(len(self._frames)),
                  "mean confidence": _text(window.mean_confidence),
                  "brightness": f"{latest.brightness:.1f}",
                  "sharpness": f"{window.sharpness:.1f}",
                  "uncertain share": _text(None if window.confidence_hist is None
                                           else uncertain_share(window.confidence_hist)),
                  "identical frames in a row": str(self._same_in_a_row)}
        # the same keys with or without a reference: a planner reads them by name
        values["reference mean confidence"] = _text(None if self.reference is None
                                                    else self.reference.mean_confidence)
        values["reference uncertain share"] = _text(None if self.reference is None
                                                    else self._ref_uncertain)
        if latest.brightness < t.black_below:
            return HealthAssessment(ERROR, f"black image (mean brightness "
                                    f"{latest.brightness:.1f} < {t.black_below:g})", score, values)
        if self._same_in_a_row >= t.frozen_frames:
            return HealthAssessment(ERROR, f"frozen image: {self._same_in_a_row} identical "
                                    "frames in a row", score, values)
        if score is None:
            return HealthAssessment(OK, "no health reference in the model: only black and "
                                    "frozen images are detected", None, values)
        if score < t.error_below:
            return HealthAssessment(ERROR, f"labels unreliable: health {score:.3f} < "
                                    f"{t.error_below:g}", score, values)
        if score < t.warn_below:
            return HealthAssessment(WARN, f"labels degraded: health {score:.3f} < "
                                    f"{t.warn_below:g}", score, values)
        return HealthAssessment(OK, f"health {score:.3f}", score, values)


def reference_from_model(model: str | Path | bytes, frames: list[np.ndarray],
                         source: str = "", num_classes: int | None = None) -> HealthReference:
    """The reference of `model` (a contract model with a confidence output, path or bytes):
    its own labels and confidence on `frames` (frames like those it was made for), through
    ONNX Runtime's CPU kernels."""
    import onnxruntime as ort

    from textseg.engine.contract import CONFIDENCE_OUTPUT, INPUT_NAME, LABELS_OUTPUT

    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    if CONFIDENCE_OUTPUT not in {o.name for o in session.get_outputs()}:
        raise ValueError("a health reference needs the model's 'confidence' output (export "
                         "it with --confidence)")
    stats = []
    for rgb in frames:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        labels, confidence = session.run([LABELS_OUTPUT, CONFIDENCE_OUTPUT],
                                         {INPUT_NAME: rgb[None]})
        if num_classes is None:
            num_classes = _class_count(session)
        stats.append(frame_stats(rgb, labels[0], confidence[0], num_classes))
    return HealthReference.from_frames(stats, source)


def _class_count(session) -> int:
    from textseg.engine.contract import ModelInfo

    meta = session.get_modelmeta().custom_metadata_map
    return ModelInfo.from_metadata(meta).num_classes

