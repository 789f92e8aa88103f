"""`labels/points`: the label image as an organized, pixel-aligned PointCloud2 (textseg.points
does the geometry). One per camera; its inputs arrive on the executor thread, the cloud is made
on the inference worker after the labels, only while somebody subscribes."""

from __future__ import annotations

import threading
import time
from collections import deque

from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from textseg.pipeline import camera_image_size, labels_intrinsics
from textseg.points import (
    POINT_FIELDS,
    POINTS_MODES,
    GroundPose,
    Intrinsics,
    PointsError,
    depth_at_labels,
    depth_in_metres,
    ground_points,
    nearest_stamp,
    pack_cloud,
    place_standing,
    point_slots,
    points_from_depth,
)

_FIELD_TYPES = {"float32": PointField.FLOAT32, "uint8": PointField.UINT8}
DEPTH_BUFFER = 10  # recent depth images kept for stamp matching (a third of a second at 30 Hz)


def _nanoseconds(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class PointsOutput:
    def __init__(self, mode: str, publisher, tolerance: float = 0.0,
                 pose: GroundPose | None = None, max_range: float = 30.0,
                 standing=None) -> None:
        if mode not in POINTS_MODES[1:]:
            raise PointsError(f"points mode {mode!r} is not one of {POINTS_MODES[1:]}")
        self.mode = mode
        self.publisher = publisher
        self.tolerance_ns = int(round(tolerance * 1e9))
        self.pose = pose
        self.max_range = max_range
        self.standing = standing  # bool [256] of output label ids, or None
        self._lock = threading.Lock()
        self._depth: deque[Image] = deque(maxlen=DEPTH_BUFFER)
        self._info: CameraInfo | None = None  # depth/camera_info (depth) or camera_info
        self._ground_key: tuple | None = None  # (height, width, intrinsics) of _ground
        self._ground = None
        self.subscriptions: list = []
        self.published = 0
        self.skipped: dict[str, int] = {}
        self.seconds: deque[float] = deque(maxlen=512)

    # --- inputs (executor thread) ----------------------------------------------------------
    def on_depth(self, msg: Image) -> None:
        with self._lock:
            self._depth.append(msg)

    def on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def wanted(self) -> bool:
        return self.publisher.get_subscription_count() > 0

    # --- the cloud (worker thread) ---------------------------------------------------------
    def _skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _matching_depth(self, stamp) -> Image | None:
        with self._lock:
            candidates = list(self._depth)
        index = nearest_stamp([_nanoseconds(m.header.stamp) for m in candidates],
                              _nanoseconds(stamp), self.tolerance_ns)
        return None if index is None else candidates[index]

    @staticmethod
    def _checked_intrinsics(info: CameraInfo | None, topic: str, input_size: tuple[int, int],
                            labels_size: tuple[int, int]) -> Intrinsics:
        """K of the labels from `info` (labels_intrinsics: binning and ROI folded, scaled to
        the label size, as labels/camera_info publishes it); `info` must describe an image of
        the frame's size."""
        if info is None:
            raise PointsError(f"no {topic} yet: no intrinsics to place the pixels with")
        described = camera_image_size(info)
        if described not in (None, tuple(input_size)):
            roi, parts = info.roi, []
            if roi.width or roi.height or roi.x_offset or roi.y_offset:
                parts.append(f"ROI {roi.width}x{roi.height} at ({roi.x_offset}, "
                             f"{roi.y_offset})")
            if info.binning_x > 1 or info.binning_y > 1:
                parts.append(f"binning {info.binning_x}x{info.binning_y}")
            folded = f" ({', '.join(parts)}: a {described[1]}x{described[0]} image)" if parts \
                else ""
            raise PointsError(f"{topic} size mismatch: {info.width}x{info.height}{folded} for "
                              f"a {input_size[1]}x{input_size[0]} image")
        k, _ = labels_intrinsics(info, input_size, labels_size)
        return Intrinsics.from_k(k, topic)

    def _intrinsics(self, input_size: tuple[int, int], labels_size: tuple[int, int],
                    camera_info: CameraInfo | None = None) -> Intrinsics:
        """The rays' K. `camera_info` is the one labels/camera_info is made from (the node's
        camera_info, None when it publishes none): when given, the rays come from it, checked
        like the cloud's own input, so the cloud always follows labels/camera_info. In depth
        mode depth/camera_info is checked too (it must describe the depth image)."""
        own_topic = "depth/camera_info" if self.mode == "depth" else "camera_info"
        with self._lock:
            own = self._info
        if self.mode == "depth" or camera_info is None:
            intrinsics = self._checked_intrinsics(own, own_topic, input_size, labels_size)
        if camera_info is not None:
            intrinsics = self._checked_intrinsics(camera_info, "camera_info", input_size,
                                                  labels_size)
        return intrinsics

    def publish(self, header, labels, confidence, input_size: tuple[int, int],
                camera_info: CameraInfo | None = None) -> str:
        """Make and publish the cloud of one frame's labels (rays from `camera_info` when
        given: _intrinsics); returns '' or why it was skipped (counted; never raises for bad
        or missing inputs)."""
        started = time.perf_counter()
        try:
            cloud = self.cloud(header, labels, confidence, input_size, camera_info)
        except PointsError as exc:
            reason = str(exc)
            self._skip(reason.split(":")[0])
            return reason
        self.publisher.publish(cloud)
        self.published += 1
        self.seconds.append(time.perf_counter() - started)
        return ""

    def cloud(self, header, labels, confidence, input_size: tuple[int, int],
              camera_info: CameraInfo | None = None) -> PointCloud2:
        """The PointCloud2 of one frame's labels; raises PointsError for missing or bad inputs."""
        height, width = labels.shape
        intrinsics = self._intrinsics(input_size, (height, width), camera_info)
        if self.mode == "depth":
            depth_msg = self._matching_depth(header.stamp)
            if depth_msg is None:
                raise PointsError("no depth image with the frame's stamp: within "
                                  f"{self.tolerance_ns / 1e9:g} s (depth_tolerance)")
            if (depth_msg.height, depth_msg.width) != tuple(input_size):
                raise PointsError(
                    f"depth size mismatch: {depth_msg.width}x{depth_msg.height} for a "
                    f"{input_size[1]}x{input_size[0]} image (register the depth to the colour "
                    "camera)")
            depth = depth_in_metres(depth_msg.encoding, depth_msg.height, depth_msg.width,
                                    depth_msg.step, depth_msg.data)
            points = points_from_depth(depth_at_labels(depth, height, width), intrinsics,
                                       out=point_slots(height, width))
        else:
            # the rays' ground points depend only on K, the pose and the size: made once
            key = (height, width, intrinsics)
            if self._ground_key != key:
                self._ground = point_slots(height, width)  # the cloud's layout: one memcpy
                self._ground[..., :3] = ground_points(height, width, intrinsics, self.pose,
                                                      self.max_range)
                self._ground_key = key
            # a copy: pack_cloud writes the labels into it, the cache stays clean
            points = (self._ground if self.standing is None
                      else place_standing(self._ground, labels, self.standing))
            if points is self._ground:
                points = points.copy()
        msg = PointCloud2()
        msg.header = header
        msg.height, msg.width = height, width
        msg.fields = [PointField(name=name, offset=offset, datatype=_FIELD_TYPES[kind], count=1)
                      for name, offset, kind in POINT_FIELDS]
        msg.is_bigendian = False
        msg.point_step = 16
        msg.row_step = 16 * width
        msg.is_dense = False
        msg.data = pack_cloud(points, labels, confidence)
        return msg
