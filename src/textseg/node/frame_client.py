"""The other end of segmentation_node: publishes frames and collects the label images.

Used by the demo, the tests and bag replay. Everything runs in the caller's thread.
"""

from __future__ import annotations

import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image

from textseg.imaging import encode_rgb


class FrameClient:
    def __init__(self, context: rclpy.context.Context | None = None,
                 image_topic: str = "image", labels_topic: str = "labels",
                 name: str = "textseg_frame_client") -> None:
        self.node = Node(name, context=context)
        reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, image_topic, reliable)
        self.received: dict[tuple[int, int], tuple[Image, float]] = {}
        self.subscription = self.node.create_subscription(Image, labels_topic, self._on_labels,
                                                          reliable)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_labels(self, msg: Image) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.received[stamp] = (msg, time.perf_counter())

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

    def image_message(self, rgb: np.ndarray, encoding: str, stamp: Time,
                      frame_id: str) -> Image:
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.height, msg.width = rgb.shape[:2]
        msg.encoding = encoding
        msg.step, msg.data = encode_rgb(rgb, encoding)
        return msg

    def exchange(self, msg: Image, timeout: float, resend_after: float = 1.0
                 ) -> tuple[Image, float] | None:
        """Publish one frame and wait for its labels; return (labels, latency s) or None.

        The frame is sent again every `resend_after` seconds while unanswered: right after
        discovery a best-effort reader may not have matched our writer yet, and the first
        sample is then lost (the graph already shows the subscription). Latency is measured
        from the last send.
        """
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            self.publisher.publish(msg)
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
