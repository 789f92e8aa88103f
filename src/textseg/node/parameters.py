"""segmentation_node's parameters as plain data: each one's default, description and limits in
one dataclass, and the checks the node runs on them before it opens anything.

ROS-free. The node declares every field as a read-only ROS parameter whose descriptor carries
the limits declared here as its range, builds `NodeParameters` from the values and calls
`validate()`. A value ROS refuses for its type or range reaches `validate()` as it was given,
so every refusal is worded here, one way.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path

from textseg.engine import BACKENDS, PRECISIONS, BackendOptions
from textseg.engine.contract import ModelInfo
from textseg.engine.engine_cache import MAX_BATCH, read_record
from textseg.engine.onnx_file import describe_model
from textseg.engine.self_check import POLICIES as SELF_CHECK_POLICIES
from textseg.health import HealthThresholds
from textseg.imaging import DEFAULT_MAX_PIXELS, scaled_size
from textseg.points import POINTS_MODES

TRANSPORTS = ("raw", "compressed")
ENGINE_BUILD = ("auto", "never")
RELIABILITIES = ("best_effort", "reliable")
MAX_PARALLEL = 8  # parallel_inferences: ONNX Runtime sessions at most
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HEALTH = HealthThresholds()  # the health_* defaults: one place (textseg.health)
TYPE_NAMES = {str: "a string", int: "an integer", float: "a double (e.g. 1.0)",
              bool: "a boolean", list: "a list of strings"}


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


@dataclass(frozen=True)
class Limits:
    """A number's bounds. An open end excludes its bound: a ROS range cannot say so, so the
    node declares the closed range and `NodeParameters.validate` refuses the bound itself."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = self.high is None or (value < self.high if self.high_open else
                                      value <= self.high)
        return above and below

    @property
    def closed(self) -> bool:
        return not (self.low_open or self.high_open)

    def describe(self) -> str:
        """'>= 1' or '> 0' without an upper bound; '1..8' between integers; '(0, 1]'."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if isinstance(self.low, int) and isinstance(self.high, int) and self.closed:
            return f"{self.low}..{self.high}"
        return (f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


def _parameter(default, description: str, *, limits: Limits | None = None,
               choices: tuple[str, ...] = (), constraints: str = "") -> Field:
    """A field of `NodeParameters`: its default and what the node's descriptor says of it.
    `constraints` is what neither a range nor the choices can say (checked where it applies)."""
    if not constraints and limits is not None and not limits.closed:
        constraints = limits.describe()  # the open end a ROS range leaves out
    metadata = {"description": description, "limits": limits, "choices": choices,
                "constraints": constraints or " | ".join(choices)}
    if isinstance(default, list):
        return field(default_factory=list, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter as the node declares it."""

    name: str
    default: object
    description: str
    limits: Limits | None
    choices: tuple[str, ...]
    constraints: str

    @property
    def kind(self) -> type:
        return type(self.default)


@dataclass(frozen=True)
class NodeParameters:
    """Every parameter of segmentation_node (docs/node.md; config/segmentation.yaml sets or
    shows each). All are read-only: restart the node to change them."""

    model: str = _parameter(
        "", "textseg ONNX model, or a baked TensorRT .engine (with its .json sidecar); empty = "
        "the default artifact", constraints="existing file")
    backend: str = _parameter(
        "auto", "Inference backend; auto = TensorRT when it and a GPU are usable, else ONNX "
        "Runtime", choices=BACKENDS)
    precision: str = _parameter("fp16", "TensorRT engine precision", choices=PRECISIONS)
    engine_cache_dir: str = _parameter(
        "", "Folder of baked TensorRT engines; empty = $TEXTSEG_ENGINE_CACHE or "
        "~/.cache/textseg/engines")
    engine_build: str = _parameter(
        "auto", "auto: build a missing or stale engine at start; never: fail with a clear "
        "error instead (engines come from `textseg bake`)", choices=ENGINE_BUILD)
    build_only: bool = _parameter(False, "Build (or verify) the TensorRT engine, then exit")
    calibration_dir: str = _parameter("", "Folder of images for int8 calibration")
    image_width: int = _parameter(
        0, "Camera width: with image_height, the TensorRT engine is prepared at start; 0 = on "
        "the first frame", limits=Limits(0))
    image_height: int = _parameter(0, "Camera height (see image_width)", limits=Limits(0))
    self_check: str = _parameter(
        "refuse", "When the model opens, its stored frames run and their labels are compared "
        "with the fp32 reference's (and an int8 file whose sums would saturate on this CPU is "
        "caught): refuse = stop with an error naming the agreement and what to do, warn = log "
        "it and run anyway, off = skip", choices=SELF_CHECK_POLICIES)
    threads: int = _parameter(0, "ONNX Runtime CPU threads; 0 = all cores", limits=Limits(0))
    parallel_inferences: int = _parameter(
        1, "ONNX Runtime: this many frames in inference at once, each in its own session with "
        "threads / N CPU threads: more frames per second, more latency per frame (measured: "
        "docs/node.md). A result that finishes after a newer frame's is dropped, so labels "
        "keep the input's order. TensorRT: always 1", limits=Limits(1, MAX_PARALLEL))
    spin_wait: bool = _parameter(
        False, "ONNX Runtime threads busy-wait between operators (false: they sleep and leave "
        "the cores to the rest of the vehicle)")
    transport: str = _parameter(
        "raw", "Input: raw = sensor_msgs/Image on `image`, compressed = "
        "sensor_msgs/CompressedImage on `image/compressed`", choices=TRANSPORTS)
    qos_reliability: str = _parameter(
        "best_effort", "Input reliability; best_effort (SensorData) also accepts reliable "
        "publishers", choices=RELIABILITIES)
    qos_depth: int = _parameter(1, "Input queue depth; 1 keeps only the newest frame",
                                limits=Limits(1))
    max_image_pixels: int = _parameter(DEFAULT_MAX_PIXELS, "Frames with more pixels are "
                                       "rejected", limits=Limits(1))
    output_scale: float = _parameter(
        1.0, "Outputs at this fraction of the input size (the frame is downscaled before "
        "inference)", limits=Limits(0.0, 1.0, low_open=True))
    publish_color: bool = _parameter(True, "Publish labels/color when subscribed")
    publish_overlay: bool = _parameter(True, "Publish labels/overlay when subscribed")
    publish_confidence: bool = _parameter(
        False, "Publish labels/confidence (the model must have a confidence output)")
    overlay_alpha: float = _parameter(0.5, "Weight of the colour mask in labels/overlay",
                                      limits=Limits(0.0, 1.0))
    camera_info: bool = _parameter(
        False, "Subscribe camera_info and publish labels/camera_info scaled to the label size")
    diagnostics_period: float = _parameter(1.0, "Seconds between /diagnostics messages",
                                           limits=Limits(0.0, low_open=True))
    cameras: list[str] = _parameter(
        [], "Several cameras, one model: each name gets its own <name>/image (or "
        "image/compressed, camera_info) in and <name>/labels/* out, its own diagnostics "
        "status, and an equal share of the model under overload; empty = one camera on image "
        "-> labels/*", constraints="names: letters, digits, _")
    class_groups: list[str] = _parameter(
        [], "Output classes made of the model's: 'NAME: a, b' merges classes a and b into NAME "
        "(one class renames it); output ids follow this order, then the others (class_others). "
        "Applied to labels, confidence, colour and LabelInfo alike; empty = the model's classes",
        constraints="'NAME: model class, ...'")
    class_others: str = _parameter(
        "keep", "The model classes no group names: keep (each under its own name, after the "
        "groups), drop (label 255, confidence 0), or a name (all merged into that one class, "
        "last)", constraints="keep | drop | NAME")
    class_colors: list[str] = _parameter(
        [], "Colour of output classes: 'NAME: r, g, b' (default: the model's colour of the "
        "class, or of a group's first member)", constraints="'NAME: r, g, b'")
    no_input_warning: float = _parameter(
        10.0, "Warn once when a subscribed camera sends nothing for this many seconds, naming "
        "the topic listened on, its publishers and the image topics the node can see; 0 = "
        "never", limits=Limits(0.0))
    points: str = _parameter(
        "off", "labels/points, an organized PointCloud2 pixel-aligned with labels/image (x, y, "
        "z in the camera frame, label, confidence), made only while subscribed: depth = from a "
        "registered depth image on depth/image (16UC1 or mono16 mm, 32FC1 m) with "
        "depth/camera_info; ground = a plain camera above flat ground (camera_info and the "
        "ground_* pose)", choices=POINTS_MODES)
    depth_tolerance: float = _parameter(
        0.0, "points: depth: the depth image's stamp may differ from the colour frame's by "
        "this many seconds (0 = identical stamps)", limits=Limits(0.0))
    ground_height: float = _parameter(
        0.0, "points: ground: the camera's height above the ground, m",
        constraints="> 0 with points: ground")
    ground_pitch: float = _parameter(
        0.0, "points: ground: the camera's pitch, rad, positive looking down",
        constraints="(-pi/2, pi/2)")
    ground_roll: float = _parameter(
        0.0, "points: ground: the camera's roll, rad, positive turning the image clockwise as "
        "seen from behind the camera", constraints="(-pi/2, pi/2)")
    ground_max_range: float = _parameter(
        30.0, "points: ground: pixels whose ray meets the ground further than this (m) are NaN",
        limits=Limits(0.0, low_open=True))
    ground_standing_classes: list[str] = _parameter(
        [], "points: ground: classes standing on the ground (e.g. car, pedestrian, pole): each "
        "column's run of them lands where its lowest pixel meets the ground, instead of "
        "smearing along the rays", constraints="output class names")
    max_batch: int = _parameter(
        0, "With several cameras: frames of up to this many cameras (of one size) run as one "
        "inference. 0 = auto: one per camera on TensorRT (an engine profile per batch size), 1 "
        "on ONNX Runtime (measured: no gain on CPU)", limits=Limits(0, MAX_BATCH))
    health: bool = _parameter(
        True, "Judge each camera's frames against the model's health reference (a rolling "
        "window: confidence, class mix, sharpness, brightness) and flag black and frozen "
        "streams: labels/health (diagnostic_msgs/DiagnosticArray, the frame's header) and a "
        "/diagnostics status. Computes the confidence on every frame (docs/node.md)")
    health_window: int = _parameter(_HEALTH.window, "Frames in the health window",
                                     limits=Limits(1))
    health_warn_below: float = _parameter(
        _HEALTH.warn_below, "Health score under which the level is WARN (labels degraded)",
        limits=Limits(0.0, 1.0))
    health_error_below: float = _parameter(
        _HEALTH.error_below, "Health score under which the level is ERROR (labels unreliable)",
        limits=Limits(0.0, 1.0), constraints="<= health_warn_below")
    health_frozen_frames: int = _parameter(
        _HEALTH.frozen_frames, "This many identical frames in a row: ERROR, frozen camera",
        limits=Limits(2))
    health_black_below: float = _parameter(
        _HEALTH.black_below, "Mean brightness (0-255) under which a frame is black: ERROR",
        limits=Limits(0.0, 255.0))

    def validate(self) -> None:
        """Raise ParameterError naming every problem, or return."""
        problems = self.problems()
        if problems:
            raise ParameterError("invalid parameters: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong, one phrase each: each parameter alone (type, choices, limits) in
        declaration order, then what parameters say together."""
        problems, mistyped = [], {}
        for spec in parameter_specs():
            value = getattr(self, spec.name)
            if not _has_kind(value, spec.kind):
                problems.append(f"{spec.name} must be {TYPE_NAMES[spec.kind]}")
                mistyped[spec.name] = spec.default
            elif spec.choices and value not in spec.choices:
                problems.append(f"{spec.name} '{value}' is not one of {spec.choices}")
            elif spec.limits is not None and not spec.limits.admits(value):
                problems.append(f"{spec.name} must be {_limit_phrase(spec.limits)}, got {value}")
        # A value of the wrong type counts as its default below, as if it had not been given.
        return problems + replace(self, **mistyped)._joint_problems()

    def _joint_problems(self) -> list[str]:
        problems = []
        if (self.image_width > 0) != (self.image_height > 0):
            problems.append("image_width and image_height must be given together")
        bad = [c for c in self.cameras if not CAMERA_NAME.match(c)]
        if bad:
            problems.append(f"cameras {bad}: a name is letters, digits and _, starting with a "
                            "letter (it becomes a topic namespace)")
        if len(set(self.cameras)) != len(self.cameras):
            problems.append(f"cameras {self.cameras} names a camera twice")
        if self.points == "ground" and self.ground_height <= 0.0:
            problems.append("points: ground needs ground_height, the camera's height above "
                            "the ground in metres (> 0)")
        if self.precision == "int8" and self.backend != "onnxruntime" and \
                not self.calibration_dir and not self.model.endswith(".engine"):
            problems.append("precision int8 needs calibration_dir (a folder of camera images)")
        if self.calibration_dir and not Path(self.calibration_dir).is_dir():
            problems.append(f"calibration_dir {self.calibration_dir} is not a folder")
        if self.health_error_below > self.health_warn_below:
            problems.append(f"health_error_below ({self.health_error_below}) must not exceed "
                            f"health_warn_below ({self.health_warn_below})")
        return problems

    def health_thresholds(self) -> HealthThresholds:
        return HealthThresholds(self.health_window, self.health_warn_below,
                                self.health_error_below, self.health_black_below,
                                self.health_frozen_frames)

    def frames_per_inference(self, batching_pays: bool) -> int:
        """Frames per inference to ask the backend for: max_batch, or auto (one per camera
        where batching pays, else 1); never more than there are cameras."""
        cameras = max(1, len(self.cameras))
        if self.max_batch > 0:
            return min(self.max_batch, cameras)
        return cameras if batching_pays else 1

    def backend_options(self, backend: str, threads: int, report: Callable[[str], None],
                        cancel: threading.Event) -> BackendOptions:
        """How to open the model on `backend` with `threads` ONNX Runtime threads each."""
        size = (self.image_height, self.image_width) if self.image_width > 0 else None
        return BackendOptions(
            backend=backend, threads=threads, spin_wait=self.spin_wait,
            precision=self.precision, cache_dir=self.engine_cache_dir,
            allow_build=self.engine_build == "auto", calibration_dir=self.calibration_dir,
            input_size=None if size is None else scaled_size(*size, self.output_scale),
            # The most frames the node may ask one inference for: a TensorRT engine gets a
            # profile per batch size; ONNX Runtime takes what its model allows.
            max_batch=self.frames_per_inference(batching_pays=True),
            cancel=cancel, self_check=self.self_check, report=report)


def check_model(path: Path, params: NodeParameters) -> ModelInfo:
    """The model's classes, failing fast before any backend work: a missing file, not a
    contract model, metadata that does not parse, an engine without its sidecar, options the
    model cannot serve."""
    if not path.is_file():
        hint = ("" if params.model else
                " (the default model ships in the package's models/; or pass model:=PATH)")
        raise FileNotFoundError(f"model file not found: {path}{hint}")
    if path.suffix == ".engine":
        if params.backend == "onnxruntime":
            raise ParameterError(f"model {path} is a TensorRT engine: use backend "
                                 "tensorrt (or auto), or give the ONNX file")
        record = read_record(path)
        info = ModelInfo.from_metadata(record.model_metadata, source=str(path))
        has_confidence = record.has_confidence
    else:
        model = describe_model(path)
        info, has_confidence = model.info, model.has_confidence
    if params.publish_confidence and not has_confidence:
        raise ParameterError(f"publish_confidence is true but {path.name} has no "
                             "'confidence' output (export the model with --confidence)")
    return info


def parameter_specs() -> list[ParameterSpec]:
    """Every parameter in declaration order."""
    defaults = NodeParameters()
    return [ParameterSpec(f.name, getattr(defaults, f.name), f.metadata["description"],
                          f.metadata["limits"], f.metadata["choices"],
                          f.metadata["constraints"]) for f in fields(NodeParameters)]


def _has_kind(value, kind: type) -> bool:
    if kind is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return type(value) is kind  # exact: a bool is no integer here, an integer no double


def _limit_phrase(limits: Limits) -> str:
    """'>= 1', '> 0', 'in 1..8', 'in (0, 1]', as the error message puts it."""
    described = limits.describe()
    return described if limits.high is None else f"in {described}"
