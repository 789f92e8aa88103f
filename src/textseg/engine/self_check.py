"""A model that checks its own numbers when it loads.

A machine, an ONNX Runtime version, a TensorRT build (fp16 overflow, a bad int8 engine, a
corrupt cache) or an int8 kernel without VNNI can change what a model computes without any
error. So every artifact carries, in its metadata (key `self_check`), a few small real frames
and the labels the fp32 reference model gave for them; every backend runs them when it opens
the model and compares.

Agreement is counted on the *interior* pixels of the reference labels (pixels whose 5x5
neighbourhood has one label): a TensorRT engine runs the frames resized to its own input size,
which moves label boundaries by a pixel without anything being wrong. What the check is for
(saturated int8 sums, tampered weights, a broken engine) changes whole regions.

Thresholds per precision of what runs, from the default model's measured agreement
(docs/engines.md#the-load-time-self-check): fp32 and fp16 agree on 100.00 % of those pixels,
the shipped 7-bit int8 files on 99.73 % (TensorRT form) and 99.84 % (CPU form), identically on
an emulated CPU without VNNI; there the old 8-bit files fell to 94.89 % and 98.74 % (CamVid val
-10.8 and -2.3 mIoU). The int8 threshold sits between the two. Saturating files are refused
before this check by their weights (textseg.engine.int8_saturation); this is the second line.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from textseg.engine.contract import ContractError
from textseg.imaging import resize_image

SELF_CHECK_KEY = "self_check"
# Frames stored at the network's input size: the size the network computes at anyway, so
# the check costs CHECK_FRAMES inferences whatever the size, and smaller frames hid damage
# (the 8-bit CPU file without VNNI: 99.64 % agreement at 160x120, 99.02 % at 480x360).
CHECK_FRAMES = 2
# The least interior-pixel agreement with the fp32 reference that each precision must reach.
THRESHOLDS = {"fp32": 0.995, "fp16": 0.99, "int8": 0.99}
SHRINK_ALLOWANCE = 0.005  # agreement allowed to drop per halving of the input size
POLICIES = ("refuse", "warn", "off")
NOT_STORED = "none stored in the model (exported before textseg 0.4)"
BOUNDARY_KERNEL = 5


class SelfCheckFailed(ContractError):
    """The model computed labels that disagree with its stored fp32 reference labels."""


@dataclass(frozen=True)
class SelfCheckData:
    frames: tuple[np.ndarray, ...]  # uint8 RGB [h, w, 3]
    labels: tuple[np.ndarray, ...]  # uint8 [h, w]: the reference model's labels
    reference: str  # what computed the labels

    def to_metadata(self) -> str:
        def png(image: np.ndarray) -> str:
            if image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if not ok:
                raise ValueError("cannot encode a self-check image as PNG")
            return base64.b64encode(encoded.tobytes()).decode("ascii")

        return json.dumps({"version": 1, "reference": self.reference,
                           "frames": [png(f) for f in self.frames],
                           "labels": [png(lab) for lab in self.labels]})

    @classmethod
    def from_metadata(cls, text: str, source: str = "model") -> SelfCheckData:
        def decode(item: str, color: bool) -> np.ndarray:
            raw = np.frombuffer(base64.b64decode(item, validate=True), np.uint8)
            image = cv2.imdecode(raw, cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED)
            if image is None:
                raise ValueError("an image does not decode")
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color else image

        try:
            data = json.loads(text)
            frames = tuple(decode(f, True) for f in data["frames"])
            labels = tuple(decode(lab, False) for lab in data["labels"])
            reference = str(data.get("reference", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise ContractError(f"{source}: metadata '{SELF_CHECK_KEY}' is malformed ({exc})"
                                ) from None
        if not frames or len(frames) != len(labels) or any(
                f.shape[:2] != lab.shape for f, lab in zip(frames, labels, strict=True)):
            raise ContractError(f"{source}: metadata '{SELF_CHECK_KEY}' has frames and labels "
                                "that do not pair up")
        return cls(frames, labels, reference)


@dataclass(frozen=True)
class SelfCheckResult:
    agreement: float  # fraction of interior reference pixels with the same label
    per_frame: tuple[float, ...]
    pixels: int
    threshold: float
    precision: str
    seconds: float
    backend: str
    size: tuple[int, int] | None = None  # (h, w) the frames ran at, when resized

    @property
    def passed(self) -> bool:
        return self.agreement >= self.threshold

    def describe(self) -> str:
        at = f" at {self.size[1]}x{self.size[0]}" if self.size else ""
        verdict = "passed" if self.passed else "FAILED"
        return (f"self-check {verdict}: {100 * self.agreement:.2f} % of {self.pixels} pixels "
                f"agree with the reference (needs {100 * self.threshold:.1f} % for "
                f"{self.precision}; {self.backend}{at}; {1000 * self.seconds:.0f} ms)")

    def record(self) -> dict:
        return {"passed": self.passed, "agreement": round(self.agreement, 6),
                "per_frame": [round(a, 6) for a in self.per_frame], "pixels": self.pixels,
                "threshold": self.threshold, "precision": self.precision,
                "backend": self.backend, "ms": round(1000 * self.seconds, 1),
                "size": list(self.size) if self.size else None}


def read_self_check(metadata: dict[str, str], source: str = "model") -> SelfCheckData | None:
    text = metadata.get(SELF_CHECK_KEY)
    return None if not text else SelfCheckData.from_metadata(text, source)


def check_images(frames: Sequence[np.ndarray], size: tuple[int, int],
                 count: int = CHECK_FRAMES) -> list[np.ndarray]:
    """`count` of `frames` ([H, W, 3] or [1, H, W, 3] uint8 RGB), spread evenly over them and
    resized to `size` (h, w): the frames a self-check stores."""
    frames = [f[0] if f.ndim == 4 else f for f in frames]
    if not frames:
        raise ValueError("a self-check needs at least one frame")
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return [np.ascontiguousarray(resize_image(frames[index], size)) for index in picks]


def make_self_check(model: str | Path | bytes, frames: Sequence[np.ndarray],
                    reference: str = "") -> SelfCheckData:
    """The self-check of `model` (an fp32 contract model, path or bytes): its labels on
    `frames` from ONNX Runtime's CPU kernels in fp32."""
    import onnxruntime as ort

    from textseg.engine.contract import INPUT_NAME, LABELS_OUTPUT

    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    frames = tuple(np.ascontiguousarray(f, dtype=np.uint8) for f in frames)
    labels = tuple(session.run([LABELS_OUTPUT], {INPUT_NAME: f[None]})[0][0] for f in frames)
    name = reference or (Path(model).name if not isinstance(model, bytes) else "model")
    return SelfCheckData(frames, labels,
                         f"{name}, fp32, onnxruntime {ort.__version__} CPU")


def interior(labels: np.ndarray, kernel: int = BOUNDARY_KERNEL) -> np.ndarray:
    """Pixels whose kernel x kernel neighbourhood holds one label."""
    element = np.ones((kernel, kernel), np.uint8)
    return cv2.dilate(labels, element) == cv2.erode(labels, element)


def run_self_check(infer_batch: Callable[[list[np.ndarray]], list[np.ndarray]],
                   data: SelfCheckData, precision: str, backend: str,
                   size: tuple[int, int] | None = None) -> SelfCheckResult:
    """Run the stored frames through `infer_batch` (frames -> label images) and compare.
    `size`: run the frames resized to (h, w) (an engine with one input size); labels are
    brought back with nearest-neighbour."""
    if precision not in THRESHOLDS:
        raise ValueError(f"self-check precision {precision!r}: one of {sorted(THRESHOLDS)}")
    started = time.perf_counter()
    frames = list(data.frames)
    stored = frames[0].shape[:2]
    resized = size is not None and tuple(size) != stored
    # Below the stored size boundaries move by more than a pixel of the reference, and the
    # network sees less (thin objects vanish: the fp32 default model agreed on 99.45 % at a
    # third of its size): a wider margin, and half a point less required per halving.
    shrink = max(stored[0] / size[0], stored[1] / size[1], 1.0) if resized else 1.0
    kernel = BOUNDARY_KERNEL * math.ceil(shrink) | 1
    if resized:
        frames = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                  for f in frames]
    same = sizes = 0
    per_frame = []
    for frame, reference in zip(frames, data.labels, strict=True):
        labels = infer_batch([frame])[0]
        if labels.shape != reference.shape:
            labels = cv2.resize(labels, (reference.shape[1], reference.shape[0]),
                                interpolation=cv2.INTER_NEAREST)
        mask = interior(reference, kernel)
        count = int(mask.sum())
        agree = int((labels[mask] == reference[mask]).sum())
        per_frame.append(agree / max(count, 1))
        same, sizes = same + agree, sizes + count
    threshold = round(THRESHOLDS[precision] - SHRINK_ALLOWANCE * math.log2(shrink), 4)
    return SelfCheckResult(same / max(sizes, 1), tuple(per_frame), sizes, threshold, precision,
                           time.perf_counter() - started, backend,
                           tuple(size) if resized else None)


def check_policy(policy: str) -> str:
    """`policy` when it is one of POLICIES, else a ValueError naming them."""
    if policy not in POLICIES:
        raise ValueError(f"self_check {policy!r}: choose one of {', '.join(POLICIES)}")
    return policy


def act(message: str, policy: str, report: Callable[[str], None] | None = None) -> None:
    """What a failed check (or a file that would compute wrong labels here) leads to:
    SelfCheckFailed under `refuse`, a warning through `report` under `warn`, nothing under
    `off`."""
    if check_policy(policy) == "refuse":
        raise SelfCheckFailed(message + " (self_check: warn runs it anyway)")
    if policy == "warn" and report is not None:
        report("WARNING " + message)


def enforce(result: SelfCheckResult, model: str | Path, policy: str, advice: str,
            report: Callable[[str], None] | None = None) -> None:
    """Act on `result` when it failed."""
    if not result.passed:
        act(f"{model}: {result.describe()}. The labels computed here are not the ones its fp32 "
            f"reference stored in it: {advice}", policy, report)


@dataclass(frozen=True)
class ClassAgreement:
    """One class of a self-check's reference labels against the labels a model computed."""
    name: str
    pixels: int  # interior reference pixels of the class
    kept: float  # the share of them the model gives the same label
    iou: float  # intersection over union of the two, on interior pixels
    labelled: int  # interior pixels the model gives the class

    def describe(self, by: str = "the model") -> str:
        if not self.pixels:  # a class the model gives where the reference has none
            return f"{self.name}: 0 reference pixels, {self.labelled} labelled by {by}"
        return (f"{self.name}: {100 * self.kept:.1f} % of its {self.pixels} reference pixels "
                f"kept (IoU {100 * self.iou:.1f} %, {self.labelled} labelled by {by})")


def class_agreement(labels: Sequence[np.ndarray], data: SelfCheckData,
                    class_names: Sequence[str]) -> list[ClassAgreement]:
    """Per class, how the labels a model computed for `data`'s frames (at their size) agree
    with the stored reference on its interior pixels, as the check counts them. Only classes
    that occur (in the reference or in the computed labels): first those of the reference,
    the least kept share of their reference pixels first, then those the model invents (no
    reference pixels), the most labelled first."""
    count = max(len(class_names), 256)
    intersection, reference, computed = (np.zeros(count, np.int64) for _ in range(3))
    for got, want in zip(labels, data.labels, strict=True):
        mask = interior(want)
        got, want = got[mask].astype(np.int64), want[mask].astype(np.int64)
        reference += np.bincount(want, minlength=count)[:count]
        computed += np.bincount(got, minlength=count)[:count]
        intersection += np.bincount(want[got == want], minlength=count)[:count]
    rows = []
    for index in np.flatnonzero(reference + computed):
        name = class_names[index] if index < len(class_names) else f"class {index}"
        union = reference[index] + computed[index] - intersection[index]
        rows.append(ClassAgreement(name, int(reference[index]),
                                   intersection[index] / max(reference[index], 1),
                                   intersection[index] / max(union, 1),
                                   int(computed[index])))
    return sorted(rows, key=lambda row: (row.pixels == 0, row.kept if row.pixels else 0,
                                         -row.pixels if row.pixels else -row.labelled))


def classes_that_lost(rows: Sequence[ClassAgreement], count: int
                      ) -> tuple[list[ClassAgreement], list[ClassAgreement]]:
    """Of `class_agreement`'s rows: the `count` reference classes that kept the least of
    their pixels (those that kept all left out), and the `count` classes the model labels
    where the reference has none."""
    lost = [row for row in rows if row.pixels and row.kept < 1.0]
    invented = [row for row in rows if not row.pixels]
    return lost[:count], invented[:count]


# Where `textseg quantize` records, in the "quantization" metadata, its file's self-check on
# the machine that made it: what a failure elsewhere is compared with.
WHERE_MADE_KEY = "self_check_where_made"


def where_made(metadata: dict[str, str]) -> dict | None:
    """The self-check an int8 file recorded where it was made, None when it records none."""
    try:
        record = json.loads(metadata.get("quantization") or "{}").get(WHERE_MADE_KEY)
    except (ValueError, AttributeError):
        return None
    return record if isinstance(record, dict) and "passed" in record else None


def int8_advice(metadata: dict[str, str]) -> str:
    """What to do about an int8 file that fails its self-check here, from what it recorded
    where it was made: a file that failed there lost accuracy in int8, one that passed there
    meets a machine or ONNX Runtime version that computes it differently."""
    made = where_made(metadata)
    if made is None:
        return ("the file does not record its self-check where it was made. Quantize the fp32 "
                "model again here (`textseg quantize` checks the new file on this machine and "
                "refuses one that fails, saying whether int8 itself loses the accuracy), or "
                "use the fp32 model")
    where = (f"{100 * float(made.get('agreement', 0)):.2f} % on {made.get('cpu', '?')}, "
             f"{made.get('backend', '?')}")
    if not made["passed"]:
        return (f"it already failed this check where `textseg quantize` made it ({where}; "
                "kept on request), so int8 lost accuracy against fp32 on the check frames and "
                "this machine is not the cause. Use the fp32 model or an fp16 file "
                "(`textseg fp16`), or quantize again with another calibration method "
                "(--method) or other calibration frames")
    return (f"it passed where `textseg quantize` made it ({where}), so this machine or ONNX "
            "Runtime version computes the int8 file differently. Use the fp32 model here, or "
            "quantize it again on this machine (`textseg quantize` checks the new file here "
            "and refuses one that fails)")
