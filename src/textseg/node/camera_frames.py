"""The frames of segmentation_node's cameras: each camera's topics and statistics, the O(1)
header check on the executor thread, and the worker thread's work: decode the newest frames,
run them (frames of several cameras of one size as one inference) and publish what is
subscribed, every output with the input's header. A failure is counted and logged for its
camera only. The node creates the publishers and subscriptions; nothing here spins."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from textseg.imaging import ImageRejected, check_image_header, compressed_header
from textseg.node.health_output import HealthOutput
from textseg.node.points_output import PointsOutput
from textseg.node.throttled_log import ThrottledLog
from textseg.node.topic_watch import SilenceCheck
from textseg.pipeline import OutputRequest, SegmentationPipeline, labels_intrinsics
from textseg.stats import NodeStatistics


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
    health: HealthOutput | None = None  # labels/health (parameter health)
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
                                self.points.publisher if self.points else None,
                                self.health.publisher if self.health else None)
                if pub is not None]

    def wanted(self) -> OutputRequest:
        """The outputs somebody subscribes to now."""
        def subscribed(pub) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        return OutputRequest(labels=subscribed(self.labels_pub),
                             color=subscribed(self.color_pub),
                             overlay=subscribed(self.overlay_pub),
                             confidence=subscribed(self.confidence_pub),
                             points=self.points is not None and self.points.wanted(),
                             health=self.health is not None)

    def camera_info_subscribed(self) -> bool:
        return (self.camera_info_pub is not None
                and self.camera_info_pub.get_subscription_count() > 0)


@dataclass(frozen=True)
class PreparedFrame:
    """A decoded frame on the worker thread, waiting for its inference."""

    channel: CameraChannel
    header: object
    rgb: np.ndarray
    wanted: OutputRequest
    received: float  # when the callback took it (perf_counter)
    started: float  # when the worker took it


def check_header(msg: Image | CompressedImage, max_pixels: int) -> None:
    """The O(1) checks of a raw or compressed image's header; raises ImageRejected."""
    if isinstance(msg, CompressedImage):
        compressed_header(msg.data, max_pixels)
    else:
        check_image_header(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                           max_pixels)


class FrameProcessor:
    """The worker thread's side: items are (channel, message, received) as the executor
    thread handed them over; `on_output` runs as each frame's outputs go out."""

    def __init__(self, logger, on_output: Callable[[], None]) -> None:
        self._logger = logger
        self._log = ThrottledLog(5.0)
        self._on_output = on_output
        self._decoder: SegmentationPipeline | None = None
        # One pipeline per parallel inference (one backend session each).
        self._pipelines: queue.SimpleQueue[SegmentationPipeline] = queue.SimpleQueue()
        self.batched_inferences = 0  # inferences that served more than one camera

    def use(self, pipelines: list[SegmentationPipeline]) -> None:
        self._decoder = pipelines[0]  # decoding is the same for all
        self._pipelines = queue.SimpleQueue()
        for pipeline in pipelines:
            self._pipelines.put(pipeline)

    def reject(self, exc: ImageRejected, channel: CameraChannel) -> None:
        channel.stats.record_rejected(exc.reason)
        self._log(self._logger.error, exc.reason, f"rejected image ({exc.reason}): {exc}",
                  held_back="more like it since the last message")

    def process(self, item) -> None:
        """One camera's frame; a failure is reported for that camera, then raised (the worker
        counts it and carries on)."""
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
            raise

    def process_batch(self, items: list) -> list[BaseException | None]:
        """The newest frames of several cameras; frames of one size run as one inference.
        Returns per frame the exception it failed with (reported for its camera)."""
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
                self.batched_inferences += len(frames) > 1
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
                rgb = self._decoder.decode_compressed(msg.data, msg.format)
            else:
                rgb = self._decoder.decode_raw(msg.encoding, msg.height, msg.width, msg.step,
                                               msg.data)
        except ImageRejected as exc:
            self.reject(exc, channel)
            return None
        wanted = channel.wanted()
        if not wanted.any() and not channel.camera_info_subscribed():
            channel.stats.record_skipped()
            return None
        return PreparedFrame(channel, msg.header, rgb, wanted, received, started)

    def _publish(self, frame: PreparedFrame, result) -> None:
        """Publish what is subscribed; the result of a frame that arrived before one already
        published (overtaken by a parallel inference) is dropped, so each topic keeps the
        input's order."""
        channel = frame.channel
        with channel.publish_lock:
            if frame.received < channel.last_published_arrival:
                channel.stats.record_late()
                return
            channel.last_published_arrival = frame.received
            self._publish_outputs(frame, result)

    def _publish_outputs(self, frame: PreparedFrame, result) -> None:
        channel, header, wanted = frame.channel, frame.header, frame.wanted
        self._on_output()
        if wanted.labels:
            channel.labels_pub.publish(image_message(header, result.labels, "mono8"))
        if result.color is not None:
            channel.color_pub.publish(image_message(header, result.color, "rgb8"))
        if result.overlay is not None:
            channel.overlay_pub.publish(image_message(header, result.overlay, "rgb8"))
        if wanted.confidence and result.confidence is not None:
            channel.confidence_pub.publish(image_message(header, result.confidence, "mono8"))
        if wanted.points:
            skipped = channel.points.publish(header, result.labels, result.confidence,
                                             frame.rgb.shape[:2], channel.camera_info)
            if skipped:
                self._log(self._logger.warning, "points: " + skipped.split(":")[0],
                          f"labels/points skipped: {skipped}")
        if channel.health is not None and result.health is not None:
            channel.health.observe(header, result.health)
        if channel.camera_info_pub is not None and channel.camera_info is not None:
            channel.camera_info_pub.publish(scaled_camera_info(
                channel.camera_info, header, frame.rgb.shape[:2], result.labels.shape))
        done = time.perf_counter()
        channel.stats.record_frame(done, result.inference_s,
                                   (done - frame.started) - result.inference_s,
                                   done - frame.received)

    def _report_error(self, exc: BaseException, channel: CameraChannel) -> None:
        message = f"{type(exc).__name__}: {exc}"
        channel.stats.record_failed(message)
        self._log(self._logger.error, "inference", f"inference failed: {message}")


def scaled_camera_info(source: CameraInfo, header, input_size, output_size) -> CameraInfo:
    """`source` (the camera's calibration) for the labels: binning and ROI folded into K and
    P, scaled to their size; so binning 0 and an empty ROI (labels_intrinsics)."""
    out = CameraInfo()
    out.header = header
    out.height, out.width = output_size
    out.distortion_model = source.distortion_model
    out.d, out.r = source.d, source.r
    out.k, out.p = labels_intrinsics(source, input_size, output_size)
    return out


def image_message(header, array: np.ndarray, encoding: str) -> Image:
    out = Image()
    out.header = header  # same stamp and frame_id: planners synchronise on it
    out.height, out.width = array.shape[:2]
    out.encoding = encoding
    out.is_bigendian = 0
    out.step = out.width * (array.shape[2] if array.ndim == 3 else 1)
    out.data = array.tobytes()  # bytes, not the ndarray: assigning arrays is ~1000x slower
    return out
