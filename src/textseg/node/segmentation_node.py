"""segmentation_node: camera images in, per-pixel class ids (and views of them) out.

Subscribes  ``image``               sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8), or
            ``image/compressed``    sensor_msgs/CompressedImage (jpeg, png)  [transport]
            ``camera_info``         sensor_msgs/CameraInfo        [camera_info, points: ground]
            ``depth/image``         sensor_msgs/Image 16UC1 or mono16 mm, 32FC1 m [points: depth]
            ``depth/camera_info``   sensor_msgs/CameraInfo of depth/image    [points: depth]
Publishes   ``labels/image``        sensor_msgs/Image mono8 class ids, the input's header
            ``labels/color``        rgb8 colour mask                          [publish_color]
            ``labels/overlay``      rgb8 mask blended over the image          [publish_overlay]
            ``labels/confidence``   mono8 max probability x 255          [publish_confidence]
            ``labels/camera_info``  camera_info of every labels/* image       [camera_info]
            ``labels/points``       sensor_msgs/PointCloud2 x y z label confidence  [points]
            ``label_info``          vision_msgs/LabelInfo, transient local (when installed)
            ``/diagnostics``        diagnostic_msgs/DiagnosticArray

A thin shell over ROS-free code (textseg.pipeline, textseg.imaging, textseg.stats,
textseg.engine). The subscription callback only runs O(1) header checks and hands the newest
frame to a worker thread; decoding, inference and publishing happen there. The model is opened
(and a TensorRT engine built, if needed) on a loader thread while the node already reports
its state on /diagnostics; the input is subscribed once the backend is ready.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from textseg.class_mapping import ClassMappingError, build_class_mapping
from textseg.engine import BACKENDS, PRECISIONS, choose_backend, default_model_path, load_backend
from textseg.engine.contract import ContractError, ModelInfo
from textseg.engine.engine_cache import MAX_BATCH, EngineCacheError, read_record
from textseg.engine.onnx_file import describe_model
from textseg.engine.self_check import POLICIES as SELF_CHECK_POLICIES
from textseg.imaging import (
    DEFAULT_MAX_PIXELS,
    ImageRejected,
    check_image_header,
    compressed_header,
    scaled_size,
)
from textseg.latest_frame_worker import LatestFrameWorker
from textseg.malloc_tuning import keep_large_buffers_in_heap
from textseg.node.label_info import MISSING_MESSAGE, label_info_message, load_label_info_types
from textseg.node.points_output import DEPTH_BUFFER, POINTS_MODES, PointsOutput
from textseg.node.topic_watch import SilenceCheck, TopicWatch
from textseg.node.usage import help_requested
from textseg.pipeline import OutputRequest, SegmentationPipeline, labels_intrinsics
from textseg.points import GroundPose, PointsError, standing_table
from textseg.stats import NodeStatistics, RateLimitedLog, diagnostic_level, diagnostic_values

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}
TRANSPORTS = ("raw", "compressed")
ENGINE_BUILD = ("auto", "never")

STRING, INTEGER = ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER
DOUBLE, BOOL = ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL
STRING_ARRAY = ParameterType.PARAMETER_STRING_ARRAY
TYPE_NAMES = {STRING: "a string", INTEGER: "an integer", DOUBLE: "a double (e.g. 1.0)",
              BOOL: "a boolean", STRING_ARRAY: "a list of strings"}

MAX_PARALLEL = 8  # parallel_inferences: ONNX Runtime sessions at most

# name: (default, type, description, constraints). All read-only: restart to change them.
PARAMETERS: dict[str, tuple] = {
    "model": ("", STRING, "textseg ONNX model, or a baked TensorRT .engine (with its .json "
              "sidecar); empty = the default artifact", "existing file"),
    "backend": ("auto", STRING, "Inference backend; auto = TensorRT when it and a GPU are "
                "usable, else ONNX Runtime", " | ".join(BACKENDS)),
    "precision": ("fp16", STRING, "TensorRT engine precision", " | ".join(PRECISIONS)),
    "engine_cache_dir": ("", STRING, "Folder of baked TensorRT engines; empty = "
                         "$TEXTSEG_ENGINE_CACHE or ~/.cache/textseg/engines", ""),
    "engine_build": ("auto", STRING, "auto: build a missing or stale engine at start; never: "
                     "fail with a clear error instead (engines come from `textseg bake`)",
                     " | ".join(ENGINE_BUILD)),
    "build_only": (False, BOOL, "Build (or verify) the TensorRT engine, then exit", ""),
    "calibration_dir": ("", STRING, "Folder of images for int8 calibration", ""),
    "image_width": (0, INTEGER, "Camera width: with image_height, the TensorRT engine is "
                    "prepared at start; 0 = on the first frame", ">= 0"),
    "image_height": (0, INTEGER, "Camera height (see image_width)", ">= 0"),
    "self_check": ("refuse", STRING, "When the model opens, its stored frames run and their "
                   "labels are compared with the fp32 reference's (and an int8 file whose sums "
                   "would saturate on this CPU is caught): refuse = stop with an error naming "
                   "the agreement and what to do, warn = log it and run anyway, off = skip",
                   " | ".join(SELF_CHECK_POLICIES)),
    "threads": (0, INTEGER, "ONNX Runtime CPU threads; 0 = all cores", ">= 0"),
    "parallel_inferences": (1, INTEGER, "ONNX Runtime: this many frames in inference at once, "
                            "each in its own session with threads / N CPU threads: more "
                            "frames per second, more latency per frame (measured on 2 cores, "
                            "int8 CPU model: 2 sessions of 1 thread 43-46 FPS against 31-35 "
                            "for one of 2). A result that finishes after a newer frame's is "
                            "dropped, so labels keep the input's order. TensorRT: always 1",
                            f"1..{MAX_PARALLEL}"),
    "spin_wait": (False, BOOL, "ONNX Runtime threads busy-wait between operators (false: "
                  "they sleep and leave the cores to the rest of the vehicle)", ""),
    "transport": ("raw", STRING, "Input: raw = sensor_msgs/Image on `image`, compressed = "
                  "sensor_msgs/CompressedImage on `image/compressed`", " | ".join(TRANSPORTS)),
    "qos_reliability": ("best_effort", STRING, "Input reliability; best_effort (SensorData) "
                        "also accepts reliable publishers", "best_effort | reliable"),
    "qos_depth": (1, INTEGER, "Input queue depth; 1 keeps only the newest frame", ">= 1"),
    "max_image_pixels": (DEFAULT_MAX_PIXELS, INTEGER, "Frames with more pixels are rejected",
                         ">= 1"),
    "output_scale": (1.0, DOUBLE, "Outputs at this fraction of the input size (the frame is "
                     "downscaled before inference)", "(0, 1]"),
    "publish_color": (True, BOOL, "Publish labels/color when subscribed", ""),
    "publish_overlay": (True, BOOL, "Publish labels/overlay when subscribed", ""),
    "publish_confidence": (False, BOOL, "Publish labels/confidence (the model must have a "
                           "confidence output)", ""),
    "overlay_alpha": (0.5, DOUBLE, "Weight of the colour mask in labels/overlay", "[0, 1]"),
    "camera_info": (False, BOOL, "Subscribe camera_info and publish labels/camera_info "
                    "scaled to the label size", ""),
    "diagnostics_period": (1.0, DOUBLE, "Seconds between /diagnostics messages", "> 0"),
    "cameras": ([], STRING_ARRAY, "Several cameras, one model: each name gets its own "
                "<name>/image (or image/compressed, camera_info) in and <name>/labels/* out, "
                "its own diagnostics status, and an equal share of the model under overload; "
                "empty = one camera on image -> labels/*", "names: letters, digits, _"),
    "class_groups": ([], STRING_ARRAY, "Output classes made of the model's: 'NAME: a, b' "
                     "merges classes a and b into NAME (one class renames it); output ids "
                     "follow this order, then the others (class_others). Applied to labels, "
                     "confidence, colour and LabelInfo alike; empty = the model's classes",
                     "'NAME: model class, ...'"),
    "class_others": ("keep", STRING, "The model classes no group names: keep (each under its "
                     "own name, after the groups), drop (label 255, confidence 0), or a name "
                     "(all merged into that one class, last)", "keep | drop | NAME"),
    "class_colors": ([], STRING_ARRAY, "Colour of output classes: 'NAME: r, g, b' (default: "
                     "the model's colour of the class, or of a group's first member)",
                     "'NAME: r, g, b'"),
    "no_input_warning": (10.0, DOUBLE, "Warn once when a subscribed camera sends nothing for "
                         "this many seconds, naming the topic listened on, its publishers and "
                         "the image topics the node can see; 0 = never", ">= 0"),
    "points": ("off", STRING, "labels/points, an organized PointCloud2 pixel-aligned with "
               "labels/image (x, y, z in the camera frame, label, confidence), made only while "
               "subscribed: depth = from a registered depth image on depth/image (16UC1 or "
               "mono16 mm, 32FC1 m) with depth/camera_info; ground = a plain camera above flat "
               "ground (camera_info and the ground_* pose)", " | ".join(POINTS_MODES)),
    "depth_tolerance": (0.0, DOUBLE, "points: depth: the depth image's stamp may differ from "
                        "the colour frame's by this many seconds (0 = identical stamps)", ">= 0"),
    "ground_height": (0.0, DOUBLE, "points: ground: the camera's height above the ground, m",
                      "> 0 with points: ground"),
    "ground_pitch": (0.0, DOUBLE, "points: ground: the camera's pitch, rad, positive looking "
                     "down", "(-pi/2, pi/2)"),
    "ground_roll": (0.0, DOUBLE, "points: ground: the camera's roll, rad, positive turning "
                    "the image clockwise as seen from behind the camera", "(-pi/2, pi/2)"),
    "ground_max_range": (30.0, DOUBLE, "points: ground: pixels whose ray meets the ground "
                         "further than this (m) are NaN", "> 0"),
    "ground_standing_classes": ([], STRING_ARRAY, "points: ground: classes standing on the "
                                "ground (e.g. car, pedestrian, pole): each column's run of "
                                "them lands where its lowest pixel meets the ground, instead of "
                                "smearing along the rays", "output class names"),
    "max_batch": (0, INTEGER, "With several cameras: frames of up to this many cameras (of one "
                  "size) run as one inference. 0 = auto: one per camera on TensorRT (an engine "
                  "profile per batch size), 1 on ONNX Runtime (measured: no gain on CPU)",
                  f"0..{MAX_BATCH}"),
}
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


@dataclass
class CameraChannel:
    """One camera's topics, statistics and latest calibration; the model is shared."""

    name: str  # "" for the single-camera node (topics at the node's own namespace)
    labels_pub: object
    color_pub: object | None
    overlay_pub: object | None
    confidence_pub: object | None
    camera_info_pub: object | None
    stats: NodeStatistics = field(default_factory=NodeStatistics)
    image_sub: object | None = None
    camera_info_sub: object | None = None
    camera_info: CameraInfo | None = None
    previous_snapshot: object | None = None
    silence: SilenceCheck | None = None  # set while the input is subscribed
    points: PointsOutput | None = None  # labels/points (parameter points)
    # Publishing in arrival order when inferences run in parallel: when the newest frame out
    # so far arrived (perf_counter). Arrival, not the stamp, so a bag replayed again or a
    # camera clock set back is not mistaken for late results.
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    last_published_arrival: float = float("-inf")

    @property
    def prefix(self) -> str:
        return f"{self.name}/" if self.name else ""

    def publishers(self) -> list:
        return [pub for pub in (self.labels_pub, self.color_pub, self.overlay_pub,
                                self.confidence_pub, self.camera_info_pub,
                                self.points.publisher if self.points else None)
                if pub is not None]


@dataclass(frozen=True)
class PreparedFrame:
    """A decoded frame on the worker thread, waiting for its inference."""

    channel: CameraChannel
    header: object
    rgb: np.ndarray
    wanted: OutputRequest
    received: float  # when the callback took it (perf_counter)
    started: float  # when the worker took it


STARTUP_ERRORS = (ParameterError, FileNotFoundError, ContractError, EngineCacheError,
                  ValueError, RuntimeError)


class SegmentationBehaviour:
    """Everything segmentation_node does, on any rclpy node class: `SegmentationNode` (a plain
    node that starts at once) and `LifecycleSegmentationNode` (the same steps driven by
    lifecycle transitions) mix it into their node base."""

    def _read_parameters(self) -> None:
        self.exit_code = 0
        self._p = self._declare_parameters()
        self._model_path = Path(self._p["model"]) if self._p["model"] else default_model_path()
        self._backends: list = []  # one, or one ONNX Runtime session per parallel inference
        self._channels: list[CameraChannel] = []
        self._stop_building = threading.Event()  # set at shutdown: cancels an engine build

    def _configure(self) -> None:
        """Check the model, create the outputs and the frame worker (no backend yet)."""
        p = self._p
        info, has_confidence = self._describe_model(self._model_path, p)
        try:
            self._class_mapping = build_class_mapping(
                info.class_names, info.palette, p["class_groups"], p["class_others"],
                p["class_colors"])
        except ClassMappingError as exc:
            raise ParameterError(str(exc)) from None
        self.model_info = info  # the model's own classes, as the backend returns them
        info = self._class_mapping.output_info(info)  # the outputs' classes
        if not self._class_mapping.identity:
            self.get_logger().info(
                f"classes: {self._class_mapping.describe(self.model_info.class_names)}")
        self.info = info
        if not self.has_parameter("class_names"):  # a lifecycle node configures again
            self.declare_parameter("class_names", list(info.class_names), ParameterDescriptor(
                description="Class names in label order (the model's, after class_groups).",
                type=ParameterType.
                PARAMETER_STRING_ARRAY, read_only=True))
            self.declare_parameter(
                "palette", [int(v) for color in info.palette for v in color],
                ParameterDescriptor(description="Flattened r,g,b colour per class (the model's, "
                                    "after class_groups and class_colors).",
                                    type=ParameterType.PARAMETER_INTEGER_ARRAY,
                                    read_only=True))

        self._log_limit = RateLimitedLog(5.0)
        self._state = "loading model"
        self._backends = []
        self._backend_description = "-"
        self._pipeline: SegmentationPipeline | None = None
        self._subscriptions_ready = False
        self._topic_watch = TopicWatch(self, self.get_logger().warning)
        self._channels = [self._make_channel(name) for name in (p["cameras"] or [""])]
        self._label_info_pub = None
        self._publish_label_info()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(
            p["diagnostics_period"], self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME))  # ticks during bag replay pauses too
        # It batches cameras once the backend says how many frames one inference takes, and
        # gets one thread per parallel inference once the sessions are open.
        self._worker = self._make_worker(1)
        self._pipelines: queue.SimpleQueue[SegmentationPipeline] = queue.SimpleQueue()
        self._batch = 1
        self._batched_inferences = 0  # inferences that served more than one camera

    def _make_channel(self, name: str) -> CameraChannel:
        p = self._p
        prefix = f"{name}/" if name else ""
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)

        def image_pub(topic: str, enabled: bool = True):
            if not enabled:
                return None
            return self.create_publisher(
                Image, prefix + topic, reliable, event_callbacks=self._topic_watch.
                publisher_callbacks(self.resolve_topic_name(prefix + topic), reliable))

        return CameraChannel(
            name=name, points=self._make_points(prefix), labels_pub=image_pub("labels/image"),
            color_pub=image_pub("labels/color", p["publish_color"]),
            overlay_pub=image_pub("labels/overlay", p["publish_overlay"]),
            confidence_pub=image_pub("labels/confidence", p["publish_confidence"]),
            camera_info_pub=(self.create_publisher(CameraInfo, prefix + "labels/camera_info",
                                                   reliable) if p["camera_info"] else None))

    def _make_points(self, prefix: str) -> PointsOutput | None:
        p = self._p
        if p["points"] == "off":
            return None
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        topic = prefix + "labels/points"
        publisher = self.create_publisher(
            PointCloud2, topic, reliable, event_callbacks=self._topic_watch.
            publisher_callbacks(self.resolve_topic_name(topic), reliable))
        try:
            ground = p["points"] == "ground"
            return PointsOutput(
                p["points"], publisher, p["depth_tolerance"],
                GroundPose(p["ground_height"], p["ground_pitch"], p["ground_roll"])
                if ground else None, p["ground_max_range"],
                standing_table(self.info.class_names, p["ground_standing_classes"])
                if ground else None)
        except PointsError as exc:
            self.destroy_publisher(publisher)
            raise ParameterError(str(exc)) from None

    def _make_worker(self, threads: int) -> LatestFrameWorker:
        # Errors are reported per camera inside _process_frame(s); the worker only counts them.
        return LatestFrameWorker(self._process_frame, process_batch=self._process_frames,
                                 threads=threads)

    def _open_backends(self) -> list:
        """Choose and open the backend (building a TensorRT engine if needed): one, or on
        ONNX Runtime one session per parallel inference; raises."""
        p = self._p
        name, why = choose_backend(p["backend"], self._model_path)
        self.get_logger().info(f"backend {name} ({why})")
        lanes, threads = 1, p["threads"]
        if p["parallel_inferences"] > 1:
            if name == "onnxruntime":
                lanes = p["parallel_inferences"]
                threads = max(1, (p["threads"] or os.cpu_count() or 1) // lanes)
                self.get_logger().info(f"{lanes} inferences in parallel, {threads} ONNX "
                                       "Runtime thread(s) each")
            else:
                self.get_logger().warning("parallel_inferences applies to ONNX Runtime; "
                                          f"{name} runs one inference at a time")
        size = ((p["image_height"], p["image_width"]) if p["image_width"] > 0 else None)
        backends = []
        try:
            for _ in range(lanes):
                backends.append(load_backend(
                    self._model_path, name, threads, precision=p["precision"],
                    cache_dir=p["engine_cache_dir"], allow_build=p["engine_build"] == "auto",
                    calibration_dir=p["calibration_dir"], report=self._report_progress,
                    spin_wait=p["spin_wait"], cancel=self._stop_building,
                    self_check=p["self_check"],
                    input_size=None if size is None else scaled_size(*size, p["output_scale"]),
                    max_batch=self._requested_batch(name)))
        except BaseException:
            for backend in backends:
                backend.close()
            raise
        return backends

    def _requested_batch(self, backend_name: str) -> int:
        """Frames per inference asked for: max_batch, or auto (one per camera where batching
        pays, i.e. TensorRT; 1 on ONNX Runtime), never more than there are cameras."""
        p = self._p
        cameras = max(1, len(p["cameras"]))
        if p["max_batch"] > 0:
            return min(p["max_batch"], cameras)
        return cameras if backend_name == "tensorrt" else 1

    def _use_backends(self, backends: list) -> None:
        backend = backends[0]
        self._backends = backends
        self.get_logger().info(f"model {backend.info.training_stage}: {backend.self_check_note}")
        self._backend_description = backend.description + (
            f" x {len(backends)} sessions in parallel" if len(backends) > 1 else "")
        p = self._p
        wanted = self._requested_batch(backend.name)
        self._batch = max(1, min(wanted, getattr(backend, "max_batch", 1)))
        if self._batch < wanted:
            self.get_logger().warning(
                f"{wanted} frames per inference asked, but the backend takes at most "
                f"{self._batch} (a model exported before textseg 0.3, or an engine baked "
                f"with a smaller --max-batch): cameras are served {self._batch} at a time")
        self._worker.max_batch = self._batch
        if self._batch > 1:
            self.get_logger().info(f"cameras batched: up to {self._batch} frames of one size "
                                   "per inference")
        if p["publish_confidence"]:
            for b in backends:  # ONNX Runtime opens the whole graph now, not on a frame
                getattr(b, "prepare_confidence", lambda: None)()
        pipelines = [SegmentationPipeline(b, self.info.palette, p["output_scale"],
                                          p["overlay_alpha"], p["max_image_pixels"],
                                          self._class_mapping)
                     for b in backends]
        self._pipeline = pipelines[0]  # decoding (the same for all)
        self._pipelines = queue.SimpleQueue()
        for pipeline in pipelines:
            self._pipelines.put(pipeline)
        if len(pipelines) > 1:  # nothing is submitted before the inputs are subscribed
            idle, self._worker = self._worker, self._make_worker(len(pipelines))
            idle.stop()

    def _subscribe_points(self, channel: CameraChannel, prefix: str, qos) -> None:
        points = channel.points
        if points.mode == "depth":
            points.subscriptions = [
                self.create_subscription(Image, prefix + "depth/image", points.on_depth,
                                         QoSProfile(depth=DEPTH_BUFFER,
                                                    reliability=qos.reliability)),
                self.create_subscription(CameraInfo, prefix + "depth/camera_info",
                                         points.on_camera_info, qos)]
        else:
            points.subscriptions = [self.create_subscription(
                CameraInfo, prefix + "camera_info", points.on_camera_info, qos)]

    def _unsubscribe_inputs(self) -> None:
        for channel in getattr(self, "_channels", []):
            if channel.points is not None:
                for sub in channel.points.subscriptions:
                    self.destroy_subscription(sub)
                channel.points.subscriptions = []
            for sub in (channel.image_sub, channel.camera_info_sub):
                if sub is not None:
                    self.destroy_subscription(sub)
            channel.image_sub = channel.camera_info_sub = None

    def _release(self) -> None:
        """Stop an engine build, the worker and the backend, and drop every ROS entity made
        by `_configure` (nothing may still use the backend when it frees its buffers)."""
        self._stop_building.set()
        self._unsubscribe_inputs()
        if getattr(self, "_worker", None) is not None:
            if not self._worker.stop():
                # Freeing the backend or a publisher under a running inference crashes the
                # process (a segfault, not an exception): wait for it instead.
                self.get_logger().warning("an inference still runs after 5 s: waiting for it "
                                          "before releasing the backend")
                self._worker.stop(timeout=None)
            self._worker = None
        for backend in self._backends:
            backend.close()
        self._backends = []
        for channel in getattr(self, "_channels", []):
            for pub in channel.publishers():
                self.destroy_publisher(pub)
        self._channels = []
        for name in ("_label_info_pub", "_diagnostics_pub"):
            pub = getattr(self, name, None)
            if pub is not None:
                self.destroy_publisher(pub)
                setattr(self, name, None)
        if getattr(self, "_diagnostics_timer", None) is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None


    # --- start-up ------------------------------------------------------------------------

    def _declare_parameters(self) -> dict:
        values, problems = {}, []
        for name, (default, kind, description, constraints) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, type=kind,
                                             additional_constraints=constraints,
                                             read_only=True)
            try:
                if kind == STRING_ARRAY:  # an empty default would be typed as a byte array
                    value = self.declare_parameter(name, Parameter.Type.STRING_ARRAY,
                                                   descriptor).value
                    values[name] = list(value) if value is not None else list(default)
                else:
                    values[name] = self.declare_parameter(name, default, descriptor).value
            except ParameterException:
                problems.append(f"{name} must be {TYPE_NAMES[kind]}")
                values[name] = default
        v = values
        for name, allowed in (("backend", BACKENDS), ("precision", PRECISIONS),
                              ("engine_build", ENGINE_BUILD), ("transport", TRANSPORTS),
                              ("qos_reliability", tuple(RELIABILITY)),
                              ("self_check", SELF_CHECK_POLICIES)):
            if v[name] not in allowed:
                problems.append(f"{name} '{v[name]}' is not one of {allowed}")
        for name, minimum in (("qos_depth", 1), ("threads", 0), ("max_image_pixels", 1),
                              ("image_width", 0), ("image_height", 0)):
            if v[name] < minimum:
                problems.append(f"{name} must be >= {minimum}, got {v[name]}")
        if (v["image_width"] > 0) != (v["image_height"] > 0):
            problems.append("image_width and image_height must be given together")
        if not 0.0 < v["output_scale"] <= 1.0:
            problems.append(f"output_scale must be in (0, 1], got {v['output_scale']}")
        if not 0.0 <= v["overlay_alpha"] <= 1.0:
            problems.append(f"overlay_alpha must be in [0, 1], got {v['overlay_alpha']}")
        bad = [c for c in v["cameras"] if not CAMERA_NAME.match(c)]
        if bad:
            problems.append(f"cameras {bad}: a name is letters, digits and _, starting with a "
                            "letter (it becomes a topic namespace)")
        if len(set(v["cameras"])) != len(v["cameras"]):
            problems.append(f"cameras {v['cameras']} names a camera twice")
        if not 1 <= v["parallel_inferences"] <= MAX_PARALLEL:
            problems.append(f"parallel_inferences must be in 1..{MAX_PARALLEL}, got "
                            f"{v['parallel_inferences']}")
        if not 0 <= v["max_batch"] <= MAX_BATCH:
            problems.append(f"max_batch must be in 0..{MAX_BATCH}, got {v['max_batch']}")
        if v["points"] not in POINTS_MODES:
            problems.append(f"points '{v['points']}' is not one of {POINTS_MODES}")
        if v["depth_tolerance"] < 0.0:
            problems.append(f"depth_tolerance must be >= 0, got {v['depth_tolerance']}")
        if v["ground_max_range"] <= 0.0:
            problems.append(f"ground_max_range must be > 0, got {v['ground_max_range']}")
        if v["points"] == "ground" and v["ground_height"] <= 0.0:
            problems.append("points: ground needs ground_height, the camera's height above "
                            "the ground in metres (> 0)")
        if v["no_input_warning"] < 0.0:
            problems.append(f"no_input_warning must be >= 0, got {v['no_input_warning']}")
        if v["diagnostics_period"] <= 0.0:
            problems.append(f"diagnostics_period must be > 0, got {v['diagnostics_period']}")
        if v["precision"] == "int8" and v["backend"] != "onnxruntime" and \
                not v["calibration_dir"] and not v["model"].endswith(".engine"):
            problems.append("precision int8 needs calibration_dir (a folder of camera images)")
        if v["calibration_dir"] and not Path(v["calibration_dir"]).is_dir():
            problems.append(f"calibration_dir {v['calibration_dir']} is not a folder")
        if problems:
            raise ParameterError("invalid parameters: " + "; ".join(problems))
        return values

    def _describe_model(self, path: Path, p: dict) -> tuple[ModelInfo, bool]:
        """Fail fast, before any backend work: missing file, not a contract model, metadata
        that does not parse, an engine without its sidecar, options the model cannot serve."""
        if not path.is_file():
            hint = ("" if p["model"] else
                    " (the default model ships in the package's models/; or pass model:=PATH)")
            raise FileNotFoundError(f"model file not found: {path}{hint}")
        if path.suffix == ".engine":
            if p["backend"] == "onnxruntime":
                raise ParameterError(f"model {path} is a TensorRT engine: use backend "
                                     "tensorrt (or auto), or give the ONNX file")
            record = read_record(path)
            info = ModelInfo.from_metadata(record.model_metadata, source=str(path))
            has_confidence = record.has_confidence
        else:
            model = describe_model(path)
            info, has_confidence = model.info, model.has_confidence
        if p["publish_confidence"] and not has_confidence:
            raise ParameterError(f"publish_confidence is true but {path.name} has no "
                                 "'confidence' output (export the model with --confidence)")
        return info, has_confidence

    def _subscribe_inputs(self) -> None:
        p = self._p
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos_depth"],
                         reliability=RELIABILITY[p["qos_reliability"]])
        info = self.info
        for channel in self._channels:
            prefix = channel.prefix
            # Default arguments bind this channel (a closure would see the loop's last one).
            if p["transport"] == "compressed":
                topic = self.resolve_topic_name(prefix + "image/compressed")
                sub = self.create_subscription(
                    CompressedImage, topic,
                    lambda msg, c=channel: self._on_compressed(msg, c), qos,
                    event_callbacks=self._topic_watch.subscription_callbacks(topic, qos))
            else:
                topic = self.resolve_topic_name(prefix + "image")
                sub = self.create_subscription(
                    Image, topic, lambda msg, c=channel: self._on_image(msg, c), qos,
                    event_callbacks=self._topic_watch.subscription_callbacks(topic, qos))
            channel.image_sub = sub
            channel.silence = SilenceCheck(p["no_input_warning"])
            if channel.points is not None:
                self._subscribe_points(channel, prefix, qos)
            if p["camera_info"]:
                channel.camera_info_sub = self.create_subscription(
                    CameraInfo, prefix + "camera_info",
                    lambda msg, c=channel: setattr(c, "camera_info", msg), qos)
            outputs = [pub.topic_name for pub in channel.publishers()]
            calibration = (f" + {channel.camera_info_sub.topic_name}"
                           if channel.camera_info_sub is not None else "")
            camera = f"camera {channel.name}: " if channel.name else ""
            self.get_logger().info(
                f"{camera}model {self._model_path} ({info.architecture}, {info.num_classes} "
                f"classes, stage {info.training_stage}); backend {self._backend_description}; "
                f"input {sub.topic_name}{calibration} [{p['qos_reliability']}, depth "
                f"{p['qos_depth']}] ({p['transport']}) -> {', '.join(outputs)}")

    def _publish_label_info(self) -> None:
        types = load_label_info_types()
        if types is None:
            self.get_logger().info(MISSING_MESSAGE)
            return
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._label_info_pub = self.create_publisher(types[0], "label_info", latched)
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        self._label_info_pub.publish(label_info_message(types, self.info, header))

    def _report_progress(self, line: str) -> None:
        if line.startswith(("engine build", "building", "int8 calibration")):
            self._state = f"building TensorRT engine: {line}"
        self.get_logger().info(line)

    def _fatal(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        self._state = f"error: {message}"
        self.get_logger().fatal(message)
        self._request_shutdown(1)

    def _request_shutdown(self, code: int) -> None:
        self.exit_code = code
        self.context.try_shutdown()  # wakes rclpy.spin in main()

    # --- frames --------------------------------------------------------------------------

    def _on_image(self, msg: Image, channel: CameraChannel) -> None:
        """Executor thread: O(1) checks only, then hand over the newest frame."""
        now = time.perf_counter()
        channel.stats.record_received(now)
        channel.silence.heard()
        try:
            check_image_header(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                               self._p["max_image_pixels"])
        except ImageRejected as exc:
            self._reject(exc, channel)
            return
        self._worker.submit((channel, msg, now), source=channel.name)

    def _on_compressed(self, msg: CompressedImage, channel: CameraChannel) -> None:
        now = time.perf_counter()
        channel.stats.record_received(now)
        channel.silence.heard()
        try:
            compressed_header(msg.data, self._p["max_image_pixels"])
        except ImageRejected as exc:
            self._reject(exc, channel)
            return
        self._worker.submit((channel, msg, now), source=channel.name)

    def _reject(self, exc: ImageRejected, channel: CameraChannel) -> None:
        channel.stats.record_rejected(exc.reason)
        allowed, held = self._log_limit.allow(exc.reason, time.monotonic())
        if allowed:
            more = f" ({held} more like it since the last message)" if held else ""
            self.get_logger().error(f"rejected image ({exc.reason}): {exc}{more}")

    @staticmethod
    def _wanted(channel: CameraChannel) -> OutputRequest:
        def subscribed(pub) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        return OutputRequest(labels=subscribed(channel.labels_pub),
                             color=subscribed(channel.color_pub),
                             overlay=subscribed(channel.overlay_pub),
                             confidence=subscribed(channel.confidence_pub),
                             points=channel.points is not None and channel.points.wanted())

    def _process_frame(self, item) -> None:
        """Worker thread: one camera's frame; a failure is reported for that camera."""
        channel = item[0]
        try:
            frame = self._prepare(*item)
            if frame is not None:
                pipeline = self._pipelines.get()  # one per worker thread: never waits
                try:
                    result = pipeline.run(frame.rgb, frame.wanted)
                finally:
                    self._pipelines.put(pipeline)
                self._publish(frame, result)
        except Exception as exc:
            self._report_error(exc, channel)
            raise  # the worker counts it and carries on

    def _process_frames(self, items: list) -> list[BaseException | None]:
        """Worker thread: the newest frames of several cameras; frames of one size run as one
        inference. Returns per frame the exception it failed with (reported for its camera)."""
        outcomes: list[BaseException | None] = [None] * len(items)
        by_size: dict[tuple[int, int], list[tuple[int, PreparedFrame]]] = {}
        for index, item in enumerate(items):
            try:
                frame = self._prepare(*item)
            except Exception as exc:  # noqa: BLE001 - that camera's frame only
                self._report_error(exc, item[0])
                outcomes[index] = exc
                continue
            if frame is not None:
                by_size.setdefault(frame.rgb.shape[:2], []).append((index, frame))
        for group in by_size.values():
            frames = [frame for _, frame in group]
            pipeline = self._pipelines.get()
            try:
                results = pipeline.run_batch([f.rgb for f in frames], [f.wanted for f in frames])
                self._batched_inferences += len(frames) > 1
            except Exception as exc:  # noqa: BLE001 - every frame of this inference failed
                for index, frame in group:
                    self._report_error(exc, frame.channel)
                    outcomes[index] = exc
                continue
            finally:
                self._pipelines.put(pipeline)
            for (index, frame), result in zip(group, results, strict=True):
                try:
                    self._publish(frame, result)
                except Exception as exc:  # noqa: BLE001
                    self._report_error(exc, frame.channel)
                    outcomes[index] = exc
        return outcomes

    def _prepare(self, channel: CameraChannel, msg, received: float) -> PreparedFrame | None:
        """Decode and decide what to compute; None when rejected or nobody listens."""
        started = time.perf_counter()
        try:
            if isinstance(msg, CompressedImage):
                rgb = self._pipeline.decode_compressed(msg.data, msg.format)
            else:
                rgb = self._pipeline.decode_raw(msg.encoding, msg.height, msg.width, msg.step,
                                                msg.data)
        except ImageRejected as exc:
            self._reject(exc, channel)
            return None
        wanted = self._wanted(channel)
        if not wanted.any() and not self._camera_info_subscribed(channel):
            channel.stats.record_skipped()
            return None
        return PreparedFrame(channel, msg.header, rgb, wanted, received, started)

    def _publish(self, frame: PreparedFrame, result) -> None:
        """Publish what is subscribed, every output with the input's header; the result of a
        frame that arrived before one already published (overtaken by a parallel inference)
        is dropped, so each topic keeps the input's order."""
        channel = frame.channel
        with channel.publish_lock:
            if frame.received < channel.last_published_arrival:
                channel.stats.record_late()
                return
            channel.last_published_arrival = frame.received
            self._publish_outputs(frame, result)

    def _publish_outputs(self, frame: PreparedFrame, result) -> None:
        channel, header, wanted = frame.channel, frame.header, frame.wanted
        if self._state != "running":  # an engine built lazily for this frame size is ready
            self._state = "running"
        if wanted.labels:
            channel.labels_pub.publish(_image(header, result.labels, "mono8"))
        if result.color is not None:
            channel.color_pub.publish(_image(header, result.color, "rgb8"))
        if result.overlay is not None:
            channel.overlay_pub.publish(_image(header, result.overlay, "rgb8"))
        if wanted.confidence and result.confidence is not None:
            channel.confidence_pub.publish(_image(header, result.confidence, "mono8"))
        if wanted.points:
            skipped = channel.points.publish(header, result.labels, result.confidence,
                                             frame.rgb.shape[:2], channel.camera_info)
            if skipped:
                allowed, held = self._log_limit.allow("points: " + skipped.split(":")[0],
                                                      time.monotonic())
                if allowed:
                    more = f" ({held} more since the last message)" if held else ""
                    self.get_logger().warning(f"labels/points skipped: {skipped}{more}")
        if channel.camera_info_pub is not None and channel.camera_info is not None:
            channel.camera_info_pub.publish(_scaled_camera_info(
                channel.camera_info, header, frame.rgb.shape[:2], result.labels.shape))
        done = time.perf_counter()
        channel.stats.record_frame(done, result.inference_s,
                                   (done - frame.started) - result.inference_s,
                                   done - frame.received)

    @staticmethod
    def _camera_info_subscribed(channel: CameraChannel) -> bool:
        return (channel.camera_info_pub is not None
                and channel.camera_info_pub.get_subscription_count() > 0)

    def _report_error(self, exc: BaseException, channel: CameraChannel) -> None:
        message = f"{type(exc).__name__}: {exc}"
        channel.stats.record_failed(message)
        allowed, held = self._log_limit.allow("inference", time.monotonic())
        if allowed:
            more = f" ({held} more since the last message)" if held else ""
            self.get_logger().error(f"inference failed: {message}{more}")

    # --- diagnostics ---------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        p = self._p
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()  # sim time during bag replay
        for channel in self._channels:
            snapshot = channel.stats.snapshot(
                time.perf_counter(), dropped=self._worker.dropped_by_source.get(channel.name, 0))
            level, message = diagnostic_level(snapshot, channel.previous_snapshot, self._state)
            channel.previous_snapshot = snapshot
            context = {"state": self._state, "backend": self._backend_description,
                       "model": str(self._model_path),
                       "classes": str(self.info.num_classes),
                       "self-check": (self._backends[0].self_check_note if self._backends
                                      else "-"),
                       "frames per inference (max)": str(self._batch),
                       "batched inferences": str(self._batched_inferences),
                       "input": f"{p['transport']} ({p['qos_reliability']}, depth "
                                f"{p['qos_depth']})"}
            if channel.name:
                context["camera"] = channel.name
            context.update(self._topic_diagnostics(channel))
            status = DiagnosticStatus()
            status.level = bytes([level])
            camera = f" {channel.name}" if channel.name else ""
            status.name = f"{self.get_fully_qualified_name()}: segmentation{camera}"
            status.message = message
            status.hardware_id = self._backend_description
            status.values = [KeyValue(key=k, value=v)
                             for k, v in diagnostic_values(snapshot, context)]
            array.status.append(status)
        self._diagnostics_pub.publish(array)

    def _topic_diagnostics(self, channel: CameraChannel) -> dict[str, str]:
        """What the other ends of the channel's topics do wrong, and a once-only warning for
        a subscribed input that stays silent."""
        watch = self._topic_watch
        inputs = [sub.topic_name for sub in (channel.image_sub, channel.camera_info_sub)
                  if sub is not None]
        outputs = [pub.topic_name for pub in channel.publishers()]
        if channel.image_sub is not None and channel.silence is not None and \
                channel.silence.due():
            kind = ("sensor_msgs/msg/CompressedImage" if self._p["transport"] == "compressed"
                    else "sensor_msgs/msg/Image")
            self.get_logger().warning(
                f"no image for {channel.silence.after:g} s: "
                f"{watch.silence_report(channel.image_sub.topic_name, kind)}")
        points = {}
        if channel.points is not None:
            seconds = sorted(channel.points.seconds)
            points = {"points published": str(channel.points.published),
                      "points p50 (ms)": (f"{1000 * seconds[len(seconds) // 2]:.2f}"
                                          if seconds else "-"),
                      **{f"points skipped: {reason}": str(count)
                         for reason, count in sorted(channel.points.skipped.items())}}
        return {**points,
                "input incompatible QoS events": str(watch.incompatible_qos.total(inputs)),
                "output incompatible QoS events": str(watch.incompatible_qos.total(outputs)),
                "incompatible type events": str(watch.incompatible_type.total(inputs + outputs))}


class SegmentationNode(SegmentationBehaviour, Node):
    """The plain node: configured at construction, the model opened on a loader thread
    (the node reports its state on /diagnostics meanwhile), the input subscribed when ready."""

    def __init__(self, **kwargs) -> None:
        super().__init__("segmentation_node", **kwargs)
        self._read_parameters()
        self._configure()
        self._loader = threading.Thread(target=self._load_backend, name="model-loader",
                                        daemon=True)
        self._loader.start()

    def _load_backend(self) -> None:
        """Loader thread: open the backend, then subscribe. A failure stops the node with one
        clear line and exit code 1."""
        try:
            backends = self._open_backends()
        except Exception as exc:  # noqa: BLE001 - every start-up failure ends the same way
            if self._stop_building.is_set():
                return  # shutting down: the build was cancelled on purpose
            self._fatal(exc)
            return
        self._use_backends(backends)
        if self._p["build_only"]:
            self.get_logger().info(f"build_only: {self._backend_description} is ready; exiting")
            self._request_shutdown(0)
            return
        self._subscribe_inputs()
        self._state = "running"

    def destroy_node(self) -> None:
        # Stop an engine build in progress, then wait for the loader and the worker before the
        # backend frees its buffers: nothing may still be using them.
        self._stop_building.set()
        loader = getattr(self, "_loader", None)
        if loader is not None and loader.is_alive() and loader is not threading.current_thread():
            loader.join(timeout=60.0)
        self._release()
        super().destroy_node()


def _scaled_camera_info(source: CameraInfo, header, input_size, output_size) -> CameraInfo:
    """`source` (the camera's calibration) for the labels: binning and ROI folded into K and
    P, scaled to their size; so binning 0 and an empty ROI (labels_intrinsics)."""
    out = CameraInfo()
    out.header = header
    out.height, out.width = output_size
    out.distortion_model = source.distortion_model
    out.d, out.r = source.d, source.r
    out.k, out.p = labels_intrinsics(source, input_size, output_size)
    return out


def _image(header, array, encoding: str) -> Image:
    out = Image()
    out.header = header  # same stamp and frame_id: planners synchronise on it
    out.height, out.width = array.shape[:2]
    out.encoding = encoding
    out.is_bigendian = 0
    out.step = out.width * (array.shape[2] if array.ndim == 3 else 1)
    out.data = array.tobytes()  # bytes, not the ndarray: assigning arrays is ~1000x slower
    return out


def run_node(node_class, args: list[str] | None = None) -> int:
    """Init rclpy, build `node_class`, spin until shutdown; the process's exit code."""
    keep_large_buffers_in_heap()  # ~5 ms less CPU per received 720p frame (malloc_tuning.py)
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = node_class()
        except STARTUP_ERRORS as exc:
            # Start-up problems get one clear line, not a traceback.
            rclpy.logging.get_logger("segmentation_node").fatal(str(exc))
            return 1
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            if rclpy.ok():
                raise
            # A shutdown (SIGINT, or the loader stopping the node) raced with the executor
            # rebuilding its wait set: rclpy then raises instead of returning. Not a failure.
        return node.exit_code
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def main(args: list[str] | None = None) -> int:
    return 0 if help_requested(args) else run_node(SegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
