"""The other end of segmentation_node, in this process: publishes frames to it and collects
what it publishes back (labels, further outputs, its /diagnostics).

FrameClient keeps the answers as messages by header stamp (bench and overload, the ROS tests,
scripts/); SerializedFrameClient keeps them as serialized bytes in arrival order (textseg
replay, which scores and records them as they came). Everything runs in the caller's thread:
nothing arrives unless the caller spins (`spin_for`, `wait_for`, `exchange` or the executor's
`spin_once`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from textseg.imaging import encode_rgb

Stamp = tuple[int, int]


def stamp_key(msg) -> Stamp:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


class FrameClient:
    """Publishes frames to `image_topic` and keeps every message the node sends back.

    transport "raw" publishes sensor_msgs/Image, "compressed" sensor_msgs/CompressedImage
    (then give image_topic="image/compressed"). `outputs` maps further topics to collect
    (e.g. {"labels/color": Image}) by header stamp; `diagnostics=True` keeps the latest
    status of each node on `diagnostics_topic`. Relative topic names resolve in `namespace`.
    """

    serialized = False  # subscriptions hand over messages (True: their serialized bytes)

    def __init__(self, context: rclpy.context.Context | None = None,
                 image_topic: str = "image", labels_topic: str = "labels/image",
                 name: str = "textseg_frame_client", transport: str = "raw",
                 outputs: dict[str, type] | None = None, diagnostics: bool = False,
                 reliability: str = "reliable", depth: int = 10, namespace: str = "",
                 diagnostics_topic: str = "/diagnostics") -> None:
        if transport not in ("raw", "compressed"):
            raise ValueError(f"transport must be raw or compressed, got {transport!r}")
        self.node = Node(name, namespace=namespace or None, context=context)
        self.transport = transport
        policy = (QoSReliabilityPolicy.RELIABLE if reliability == "reliable"
                  else QoSReliabilityPolicy.BEST_EFFORT)
        self.publisher = self.node.create_publisher(
            CompressedImage if transport == "compressed" else Image, image_topic,
            QoSProfile(depth=depth, reliability=policy))
        reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
        self.labels_topic = labels_topic
        self.received: dict[Stamp, tuple[Image, float]] = {}
        self.subscription = self.node.create_subscription(Image, labels_topic, self._on_labels,
                                                          reliable, raw=self.serialized)
        self.outputs: dict[str, dict[Stamp, tuple[object, float]]] = {}
        self._output_subscriptions = []
        for topic, kind in (outputs or {}).items():
            self.outputs[topic] = {}
            self._output_subscriptions.append(self.node.create_subscription(
                kind, topic, self._collector(topic), reliable, raw=self.serialized))
        # status name -> (values, DiagnosticStatus, header stamp); and when it came
        self.diagnostics: dict[str, tuple[dict[str, str], object, Time]] = {}
        self.diagnostics_arrived: dict[str, float] = {}  # time.perf_counter
        if diagnostics:
            self._diagnostics_subscription = self.node.create_subscription(
                DiagnosticArray, diagnostics_topic, self._on_diagnostics, reliable)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_labels(self, msg: Image) -> None:
        self.received[stamp_key(msg)] = (msg, time.perf_counter())

    def _collector(self, topic: str) -> Callable:
        def collect(msg) -> None:
            self.outputs[topic][stamp_key(msg)] = (msg, time.perf_counter())
        return collect

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        arrived = time.perf_counter()
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = (values, status, msg.header.stamp)
            self.diagnostics_arrived[status.name] = arrived

    def node_diagnostics(self, node: str = "segmentation_node"
                         ) -> tuple[dict[str, str], object, Time] | None:
        """(values, DiagnosticStatus, header stamp) of the newest status of `node`: a fully
        qualified name ("/front/segmentation_node") or a bare node name (when it came:
        diagnostics_arrived[status.name])."""
        for name, entry in self.diagnostics.items():
            publisher = name.split(":")[0]
            if publisher == node or (not node.startswith("/")
                                     and publisher.rsplit("/", 1)[-1] == node):
                return entry
        return None

    def connected(self) -> bool:
        """Whether the node subscribes to our images and publishes labels to us."""
        return (self.publisher.get_subscription_count() > 0
                and self.node.count_publishers(self.subscription.topic_name) > 0)

    def wait_for_node(self, timeout: float, alive=lambda: True) -> None:
        """Block until the node subscribes to our images and publishes labels to us."""
        deadline = time.monotonic() + timeout
        while not self.connected():
            if not alive():
                raise RuntimeError("segmentation_node exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"segmentation_node did not connect within {timeout:.0f} s")
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.01, max(0.0, deadline - time.monotonic())))

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def image_message(self, rgb: np.ndarray, encoding: str, stamp: Time,
                      frame_id: str) -> Image:
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.height, msg.width = rgb.shape[:2]
        msg.encoding = encoding
        msg.step, msg.data = encode_rgb(rgb, encoding)
        return msg

    @staticmethod
    def compressed_message(rgb: np.ndarray, stamp: Time, frame_id: str, fmt: str = "jpeg",
                           quality: int = 90) -> CompressedImage:
        """JPEG or PNG, as image_transport's compressed publisher names them."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if fmt == "jpeg":
            ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        elif fmt == "png":
            ok, data = cv2.imencode(".png", bgr)
        else:
            raise ValueError(f"format must be jpeg or png, got {fmt!r}")
        if not ok:
            raise ValueError(f"cannot encode a {rgb.shape} image as {fmt}")
        msg = CompressedImage()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.format = f"rgb8; {fmt} compressed bgr8"
        msg.data = data.tobytes()
        return msg

    def publish(self, msg) -> float:
        """Publish one message (or its serialized bytes); returns the send time
        (time.perf_counter)."""
        sent = time.perf_counter()
        self.publisher.publish(msg)
        return sent

    def exchange(self, msg, timeout: float, resend_after: float = 1.0
                 ) -> tuple[Image, float] | None:
        """Publish one frame and wait for its labels; return (labels, latency s) or None.

        The frame is sent again every `resend_after` seconds while unanswered: right after
        discovery a best-effort reader may not have matched our writer yet, and the first
        sample is then lost (the graph already shows the subscription). Latency is measured
        from the last send.
        """
        key = stamp_key(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.publish(msg)
            resend_at = min(deadline, time.monotonic() + resend_after)
            while key not in self.received and time.monotonic() < resend_at:
                self.executor.spin_once(timeout_sec=0.01)
            if key in self.received:
                labels, arrived = self.received.pop(key)
                self.received.clear()  # late duplicates of earlier frames
                return labels, arrived - sent
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


class SerializedFrameClient(FrameClient):
    """A FrameClient that keeps what the node sends back as serialized CDR bytes, in arrival
    order, for a caller that decodes it its own way and may write it to a bag unchanged:
    `answers` holds (labels bytes, arrival time.perf_counter), `output_messages[topic]` the
    bytes of each further output. Messages by stamp (`received`, `outputs`, `exchange`) stay
    empty here; drive it with `publish` and the executor."""

    serialized = True

    def __init__(self, *args, **kwargs) -> None:
        self.answers: deque[tuple[bytes, float]] = deque()
        self.output_messages: dict[str, deque[bytes]] = {}
        super().__init__(*args, **kwargs)

    def _on_labels(self, raw: bytes) -> None:
        self.answers.append((raw, time.perf_counter()))

    def _collector(self, topic: str) -> Callable:
        queue = self.output_messages.setdefault(topic, deque())

        def collect(raw: bytes) -> None:  # a function: rclpy reads its callback's signature
            queue.append(raw)
        return collect
