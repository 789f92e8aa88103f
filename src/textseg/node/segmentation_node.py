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
            ``labels/health``       diagnostic_msgs/DiagnosticArray, the frame's header  [health]
            ``label_info``          vision_msgs/LabelInfo, transient local (when installed)
            ``/diagnostics``        diagnostic_msgs/DiagnosticArray

The shell that wires ROS to ROS-free modules: the parameters and their checks
(node.parameters), the frames of each camera (node.camera_frames, over textseg.pipeline), the
diagnostics (node.diagnostics) and the backends (textseg.engine). The subscription callback only
runs O(1) header checks and hands the newest frame to a worker thread; decoding, inference and
publishing happen there. The model is opened (and a TensorRT engine built, if needed) on a
loader thread while the node already reports its state on /diagnostics; the input is
subscribed once the backend is ready.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    ParameterDescriptor,
    ParameterType,
)
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from textseg.class_mapping import ClassMappingError, build_class_mapping
from textseg.engine import choose_backend, default_model_path, load_backend
from textseg.health import HealthMonitor, HealthReferenceError, read_health_reference
from textseg.imaging import ImageRejected
from textseg.latest_frame_worker import LatestFrameWorker
from textseg.node.camera_frames import CameraChannel, FrameProcessor, check_header
from textseg.node.diagnostics import (
    NodeReport,
    camera_status,
    input_description,
    points_values,
    topic_event_values,
)
from textseg.node.health_output import HealthOutput
from textseg.node.label_info import MISSING_MESSAGE, label_info_message, load_label_info_types
from textseg.node.node_process import run_node
from textseg.node.parameters import (
    NodeParameters,
    ParameterError,
    check_model,
)
from textseg.node.points_output import DEPTH_BUFFER, PointsOutput
from textseg.node.ros_parameters import declare_node_parameters
from textseg.node.topic_watch import SilenceCheck, TopicWatch
from textseg.node.usage import help_requested
from textseg.pipeline import SegmentationPipeline
from textseg.points import GroundPose, PointsError, standing_table

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}


class SegmentationBehaviour:
    """Everything segmentation_node does, on any rclpy node class: `SegmentationNode` (a plain
    node that starts at once) and `LifecycleSegmentationNode` (the same steps driven by
    lifecycle transitions) mix it into their node base."""

    def _read_parameters(self) -> None:
        self.exit_code = 0
        self._p = self._declare_parameters()
        self._model_path = Path(self._p.model) if self._p.model else default_model_path()
        self._backends: list = []  # one, or one ONNX Runtime session per parallel inference
        self._channels: list[CameraChannel] = []
        self._stop_building = threading.Event()  # set at shutdown: cancels an engine build

    def _declare_parameters(self) -> NodeParameters:
        return declare_node_parameters(self)

    def _configure(self) -> None:
        """Check the model, create the outputs and the frame worker (no backend yet)."""
        p = self._p
        info = check_model(self._model_path, p)
        try:
            self._class_mapping = build_class_mapping(
                info.class_names, info.palette, p.class_groups, p.class_others, p.class_colors)
        except ClassMappingError as exc:
            raise ParameterError(str(exc)) from None
        self.model_info = info  # the model's own classes, as the backend returns them
        try:
            self._health_reference = read_health_reference(info.extra, info.num_classes)
        except HealthReferenceError as exc:  # health still flags black and frozen streams
            self.get_logger().warning(f"{exc}: labels/health without a reference")
            self._health_reference = None
        self.info = self._class_mapping.output_info(info)  # the outputs' classes
        if not self._class_mapping.identity:
            self.get_logger().info(
                f"classes: {self._class_mapping.describe(self.model_info.class_names)}")
        if not self.has_parameter("class_names"):  # a lifecycle node configures again
            self.declare_parameter("class_names", list(self.info.class_names), ParameterDescriptor(
                description="Class names in label order (the model's, after class_groups).",
                type=ParameterType.PARAMETER_STRING_ARRAY, read_only=True))
            self.declare_parameter(
                "palette", [int(v) for color in self.info.palette for v in color],
                ParameterDescriptor(description="Flattened r,g,b colour per class (the model's, "
                                    "after class_groups and class_colors).",
                                    type=ParameterType.PARAMETER_INTEGER_ARRAY,
                                    read_only=True))

        self._state = "loading model"
        self._backends = []
        self._backend_description = "-"
        self._topic_watch = TopicWatch(self, self.get_logger().warning)
        self._channels = [self._make_channel(name) for name in (p.cameras or [""])]
        self._label_info_pub = None
        self._publish_label_info()
        # The worker batches cameras once the backend says how many frames one inference
        # takes, and gets one thread per parallel inference once the sessions are open.
        self._frames = FrameProcessor(self.get_logger(), self._mark_running)
        self._worker = self._make_worker(1)
        self._batch = 1
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(
            p.diagnostics_period, self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME))  # ticks during bag replay pauses too

    def _make_channel(self, name: str) -> CameraChannel:
        p = self._p
        prefix = f"{name}/" if name else ""
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)

        def image_pub(topic: str, enabled: bool = True):
            return self._reliable_publisher(Image, prefix + topic) if enabled else None

        return CameraChannel(
            name=name, points=self._make_points(prefix), health=self._make_health(name, prefix),
            labels_pub=image_pub("labels/image"),
            color_pub=image_pub("labels/color", p.publish_color),
            overlay_pub=image_pub("labels/overlay", p.publish_overlay),
            confidence_pub=image_pub("labels/confidence", p.publish_confidence),
            camera_info_pub=(self.create_publisher(CameraInfo, prefix + "labels/camera_info",
                                                   reliable) if p.camera_info else None))

    def _make_points(self, prefix: str) -> PointsOutput | None:
        p = self._p
        if p.points == "off":
            return None
        publisher = self._reliable_publisher(PointCloud2, prefix + "labels/points")
        try:
            ground = p.points == "ground"
            return PointsOutput(
                p.points, publisher, p.depth_tolerance,
                GroundPose(p.ground_height, p.ground_pitch, p.ground_roll) if ground else None,
                p.ground_max_range,
                standing_table(self.info.class_names, p.ground_standing_classes)
                if ground else None)
        except PointsError as exc:
            self.destroy_publisher(publisher)
            raise ParameterError(str(exc)) from None

    def _make_health(self, name: str, prefix: str) -> HealthOutput | None:
        if not self._p.health:
            return None
        node = self.get_fully_qualified_name()
        return HealthOutput(self._reliable_publisher(DiagnosticArray, prefix + "labels/health"),
                            HealthMonitor(self._health_reference, self._p.health_thresholds()),
                            f"{node}: health{' ' + name if name else ''}", node)

    def _reliable_publisher(self, kind, topic: str):
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        return self.create_publisher(kind, topic, reliable, event_callbacks=self._topic_watch.
                                     publisher_callbacks(self.resolve_topic_name(topic),
                                                         reliable))

    def _make_worker(self, threads: int) -> LatestFrameWorker:
        # Errors are reported per camera by the frame processor; the worker only counts them.
        return LatestFrameWorker(self._frames.process, process_batch=self._frames.process_batch,
                                 threads=threads)

    def _open_backends(self) -> list:
        """Choose and open the backend (building a TensorRT engine if needed): one, or on
        ONNX Runtime one session per parallel inference; raises."""
        p = self._p
        name, why = choose_backend(p.backend, self._model_path)
        self.get_logger().info(f"backend {name} ({why})")
        lanes, threads = 1, p.threads
        if p.parallel_inferences > 1:
            if name == "onnxruntime":
                lanes = p.parallel_inferences
                threads = max(1, (p.threads or os.cpu_count() or 1) // lanes)
                self.get_logger().info(f"{lanes} inferences in parallel, {threads} ONNX "
                                       "Runtime thread(s) each")
            else:
                self.get_logger().warning("parallel_inferences applies to ONNX Runtime; "
                                          f"{name} runs one inference at a time")
        options = p.backend_options(name, threads, self._report_progress, self._stop_building)
        backends = []
        try:
            for _ in range(lanes):
                backends.append(load_backend(self._model_path, options))
        except BaseException:
            for backend in backends:
                backend.close()
            raise
        return backends

    def _use_backends(self, backends: list) -> None:
        backend = backends[0]
        self._backends = backends
        self.get_logger().info(f"model {backend.info.training_stage}: {backend.self_check_note}")
        self._backend_description = backend.description + (
            f" x {len(backends)} sessions in parallel" if len(backends) > 1 else "")
        p = self._p
        wanted = p.frames_per_inference(backend.batching_pays)
        self._batch = max(1, min(wanted, backend.max_batch))
        if self._batch < wanted:
            self.get_logger().warning(
                f"{wanted} frames per inference asked, but the backend takes at most "
                f"{self._batch} (a model exported before textseg 0.3, or an engine baked "
                f"with a smaller --max-batch): cameras are served {self._batch} at a time")
        if self._batch > 1:
            self.get_logger().info(f"cameras batched: up to {self._batch} frames of one size "
                                   "per inference")
        if p.publish_confidence or p.health:
            for b in backends:  # ONNX Runtime opens the whole graph now, not on a frame
                b.prepare_confidence()
        self._frames.use([SegmentationPipeline(b, self.info.palette, p.output_scale,
                                               p.overlay_alpha, p.max_image_pixels,
                                               self._class_mapping) for b in backends])
        if len(backends) > 1:  # nothing is submitted before the inputs are subscribed
            idle, self._worker = self._worker, self._make_worker(len(backends))
            idle.stop()
        self._worker.max_batch = self._batch  # on the worker that serves the frames

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

    def _subscribe_inputs(self) -> None:
        p = self._p
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p.qos_depth,
                         reliability=RELIABILITY[p.qos_reliability])
        message_type, suffix = ((CompressedImage, "image/compressed")
                                if p.transport == "compressed" else (Image, "image"))
        info = self.info
        for channel in self._channels:
            prefix = channel.prefix
            topic = self.resolve_topic_name(prefix + suffix)
            # Default arguments bind this channel (a closure would see the loop's last one).
            sub = self.create_subscription(
                message_type, topic, lambda msg, c=channel: self._on_frame(msg, c), qos,
                event_callbacks=self._topic_watch.subscription_callbacks(topic, qos))
            channel.image_sub = sub
            channel.silence = SilenceCheck(p.no_input_warning)
            if channel.points is not None:
                self._subscribe_points(channel, prefix, qos)
            if p.camera_info:
                channel.camera_info_sub = self.create_subscription(
                    CameraInfo, prefix + "camera_info",
                    lambda msg, c=channel: setattr(c, "camera_info", msg), qos)
            outputs = [pub.topic_name for pub in channel.publishers()]
            also = [channel.camera_info_sub,
                    *(channel.points.subscriptions if channel.points else [])]
            calibration = "".join(f" + {t}" for t in dict.fromkeys(s.topic_name for s in also if s))
            camera = f"camera {channel.name}: " if channel.name else ""
            self.get_logger().info(
                f"{camera}model {self._model_path} ({info.architecture}, {info.num_classes} "
                f"classes, stage {info.training_stage}); backend {self._backend_description}; "
                f"input {sub.topic_name}{calibration} [{p.qos_reliability}, depth "
                f"{p.qos_depth}] ({p.transport}) -> {', '.join(outputs)}")

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

    def _mark_running(self) -> None:
        """A frame's outputs go out: an engine built lazily for its size is ready."""
        if self._state != "running":
            self._state = "running"

    def _fatal(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        self._state = f"error: {message}"
        self.get_logger().fatal(message)
        self._request_shutdown(1)

    def _request_shutdown(self, code: int) -> None:
        self.exit_code = code
        self.context.try_shutdown()  # wakes rclpy.spin in main()

    # --- frames and diagnostics ----------------------------------------------------------

    def _on_frame(self, msg: Image | CompressedImage, channel: CameraChannel) -> None:
        """Executor thread: O(1) checks only, then hand over the newest frame."""
        now = time.perf_counter()
        channel.stats.record_received(now)
        channel.silence.heard()
        try:
            check_header(msg, self._p.max_image_pixels)
        except ImageRejected as exc:
            self._frames.reject(exc, channel)
            return
        self._worker.submit((channel, msg, now), source=channel.name)

    def _publish_diagnostics(self) -> None:
        p = self._p
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()  # sim time during bag replay
        report = NodeReport(
            state=self._state, backend=self._backend_description, model=str(self._model_path),
            classes=self.info.num_classes,
            self_check=self._backends[0].self_check_note if self._backends else "-",
            frames_per_inference=self._batch,
            batched_inferences=self._frames.batched_inferences,
            input=input_description(p.transport, p.qos_reliability, p.qos_depth))
        for channel in self._channels:
            snapshot = channel.stats.snapshot(
                time.perf_counter(), dropped=self._worker.dropped_by_source.get(channel.name, 0))
            self._warn_when_silent(channel)
            status = camera_status(self.get_fully_qualified_name(), channel.name, snapshot,
                                   channel.previous_snapshot, report, self._topic_values(channel))
            channel.previous_snapshot = snapshot
            array.status.append(DiagnosticStatus(
                level=bytes([status.level]), name=status.name, message=status.message,
                hardware_id=status.hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in status.values]))
            if channel.health is not None:
                array.status.append(channel.health.status())
        self._diagnostics_pub.publish(array)

    def _topic_values(self, channel: CameraChannel) -> dict[str, str]:
        """labels/points' counts, and what the other ends of the channel's topics do wrong."""
        watch = self._topic_watch
        inputs = [sub.topic_name for sub in (channel.image_sub, channel.camera_info_sub)
                  if sub is not None]
        outputs = [pub.topic_name for pub in channel.publishers()]
        points = channel.points
        return {**(points_values(points.published, points.seconds, points.skipped)
                   if points is not None else {}),
                **topic_event_values(watch.incompatible_qos.total(inputs),
                                     watch.incompatible_qos.total(outputs),
                                     watch.incompatible_type.total(inputs + outputs))}

    def _warn_when_silent(self, channel: CameraChannel) -> None:
        """Once, when a subscribed input stays silent: what the node listens on and sees."""
        if channel.image_sub is None or channel.silence is None or not channel.silence.due():
            return
        kind = ("sensor_msgs/msg/CompressedImage" if self._p.transport == "compressed"
                else "sensor_msgs/msg/Image")
        self.get_logger().warning(
            f"no image for {channel.silence.after:g} s: "
            f"{self._topic_watch.silence_report(channel.image_sub.topic_name, kind)}")


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
        if self._p.build_only:
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


def main(args: list[str] | None = None) -> int:
    return 0 if help_requested(args) else run_node(SegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
