"""The other end of segmentation_node: publishes frames and collects what the node publishes.

Used by the demo, the benchmarks, the tests and bag replay. Everything runs in the caller's
thread (spin with `spin_for`, `exchange` or `wait_for`).
"""

from __future__ import annotations

import time
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
    /diagnostics status of each node.
    """

    def __init__(self, context: rclpy.context.Context | None = None,
                 image_topic: str = "image", labels_topic: str = "labels/image",
                 name: str = "textseg_frame_client", transport: str = "raw",
                 outputs: dict[str, type] | None = None, diagnostics: bool = False,
                 reliability: str = "reliable", depth: int = 10) -> None:
        if transport not in ("raw", "compressed"):
            raise ValueError(f"transport must be raw or compressed, got {transport!r}")
        self.node = Node(name, context=context)
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
                                                          reliable)
        self.outputs: dict[str, dict[Stamp, tuple[object, float]]] = {}
        self._output_subscriptions = []
        for topic, kind in (outputs or {}).items():
            self.outputs[topic] = {}
            self._output_subscriptions.append(self.node.create_subscription(
                kind, topic, self._collector(topic), reliable))
        self.diagnostics: dict[str, tuple[dict[str, str], object, float]] = {}
        if diagnostics:
            self._diagnostics_subscription = self.node.create_subscription(
                DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_labels(self, msg: Image) -> None:
        self.received[stamp_key(msg)] = (msg, time.perf_counter())

    def _collector(self, topic: str) -> Callable:
        def collect(msg) -> None:
            self.outputs[topic][stamp_key(msg)] = (msg, time.perf_counter())
        return collect

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = (values, status, msg.header.stamp)

    def node_diagnostics(self, node: str = "segmentation_node"
                         ) -> tuple[dict[str, str], object, object] | None:
        """(values, DiagnosticStatus, header stamp) of the newest status of `node`: a fully
        qualified name ("/front/segmentation_node") or a bare node name."""
        for name, entry in self.diagnostics.items():
            publisher = name.split(":")[0]
            if publisher == node or (not node.startswith("/")
                                     and publisher.rsplit("/", 1)[-1] == node):
                return entry
        return None

    def wait_for_node(self, timeout: float, alive=lambda: True) -> None:
        """Block until the node subscribes to our images and publishes labels to us."""
        deadline = time.monotonic() + timeout
        while (self.publisher.get_subscription_count() == 0
               or self.node.count_publishers(self.subscription.topic_name) == 0):
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
        """Publish one message; returns the send time (time.perf_counter)."""
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
