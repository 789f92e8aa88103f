"""segmentation_node: camera images in, per-pixel class-id images out.

Subscribes  ``image``   sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8)
Publishes   ``labels``  sensor_msgs/Image mono8, input size, input header

The subscription callback only hands the newest frame to a worker thread; conversion,
inference and publishing happen there, never on the executor thread.
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image

from textseg.engine import BACKENDS, default_model_path, load_backend
from textseg.imaging import DEFAULT_MAX_PIXELS, ImageRejected, image_to_rgb
from textseg.latest_frame_worker import LatestFrameWorker

RELIABILITY = {
    "best_effort": QoSReliabilityPolicy.BEST_EFFORT,
    "reliable": QoSReliabilityPolicy.RELIABLE,
}


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


def _descriptor(description: str, kind: int, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, type=kind, read_only=read_only)


class SegmentationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("segmentation_node", **kwargs)
        p = self._declare_and_validate_parameters()
        self.backend = load_backend(p["model"], p["backend"], p["threads"])
        info = self.backend.info
        self.declare_parameter(
            "class_names", list(info.class_names),
            _descriptor("Class names in label order (from the model).",
                        ParameterType.PARAMETER_STRING_ARRAY, read_only=True))
        self.declare_parameter(
            "palette", [int(v) for color in info.palette for v in color],
            _descriptor("Flattened r,g,b colour per class (from the model).",
                        ParameterType.PARAMETER_INTEGER_ARRAY, read_only=True))
        self._max_pixels = p["max_image_pixels"]
        self._rejected = 0

        self._labels_pub = self.create_publisher(Image, "labels", 1)
        input_qos = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=p["qos_depth"],
                               reliability=RELIABILITY[p["qos_reliability"]])
        self._worker = LatestFrameWorker(self._process_frame, on_error=self._report_error)
        self._image_sub = self.create_subscription(Image, "image", self._worker.submit,
                                                   input_qos)
        self.get_logger().info(
            f"model {getattr(self.backend, 'model_path', p['model'])} "
            f"({info.architecture}, {info.num_classes} classes, stage {info.training_stage}); "
            f"backend {self.backend.name}; input {self._image_sub.topic_name} "
            f"[{p['qos_reliability']}, depth {p['qos_depth']}] -> {self._labels_pub.topic_name}")

    def _declare_and_validate_parameters(self) -> dict:
        string, integer = ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER
        declared = {
            "model": ("", _descriptor(
                f"Path of a textseg ONNX model; empty = the default artifact "
                f"({default_model_path()}).", string, read_only=True)),
            "backend": ("auto", _descriptor(
                f"Inference backend: {', '.join(BACKENDS)}.", string, read_only=True)),
            "threads": (0, _descriptor(
                "CPU threads for inference; 0 = all cores.", integer, read_only=True)),
            "qos_reliability": ("best_effort", _descriptor(
                "Input subscription reliability: best_effort (SensorData) or reliable.",
                string, read_only=True)),
            "qos_depth": (1, _descriptor(
                "Input queue depth; 1 keeps only the newest frame.", integer, read_only=True)),
            "max_image_pixels": (DEFAULT_MAX_PIXELS, _descriptor(
                "Frames with more pixels are rejected.", integer, read_only=True)),
        }
        values = {name: self.declare_parameter(name, default, descriptor).value
                  for name, (default, descriptor) in declared.items()}
        problems = []
        if values["backend"] not in BACKENDS:
            problems.append(f"backend '{values['backend']}' is not one of {BACKENDS}")
        if values["qos_reliability"] not in RELIABILITY:
            problems.append(f"qos_reliability '{values['qos_reliability']}' is not one of "
                            f"{tuple(RELIABILITY)}")
        if values["qos_depth"] < 1:
            problems.append(f"qos_depth must be >= 1, got {values['qos_depth']}")
        if values["threads"] < 0:
            problems.append(f"threads must be >= 0, got {values['threads']}")
        if values["max_image_pixels"] < 1:
            problems.append(f"max_image_pixels must be >= 1, got {values['max_image_pixels']}")
        if problems:
            raise ParameterError("invalid parameters: " + "; ".join(problems))
        return values

    def _process_frame(self, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               self._max_pixels)
        except ImageRejected as exc:
            self._rejected += 1
            self.get_logger().error(f"rejected image ({exc.reason}): {exc}",
                                    throttle_duration_sec=5.0)
            return
        labels = self.backend.infer(rgb).labels
        self._labels_pub.publish(self._label_message(msg, labels))

    @staticmethod
    def _label_message(source: Image, labels: np.ndarray) -> Image:
        out = Image()
        out.header = source.header  # same stamp and frame_id: planners synchronise on it
        out.height, out.width = labels.shape
        out.encoding = "mono8"
        out.is_bigendian = 0
        out.step = out.width
        out.data = labels.tobytes()  # bytes, not the ndarray: assigning arrays is ~1000x slower
        return out

    def _report_error(self, exc: BaseException) -> None:
        self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=5.0)

    def destroy_node(self) -> None:
        self._worker.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = SegmentationNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterError, FileNotFoundError, ValueError) as exc:
        # Start-up problems get one clear line, not a traceback.
        rclpy.logging.get_logger("segmentation_node").fatal(str(exc))
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
