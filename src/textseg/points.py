"""Labels in 3D, without ROS: an organized, pixel-aligned point cloud for the label image.

Two sources of the metric position of each pixel, both in the camera's optical frame (x right,
y down, z forward, metres; REP 103):

- depth: a registered depth image (16UC1 or mono16 millimetres, 32FC1 metres) back-projected
  through the pinhole K: X = (u - cx) Z / fx, Y = (v - cy) Z / fy. Invalid depth (0, NaN, inf)
  -> NaN. Labels smaller than the depth image (output_scale) take the depth where each label
  pixel's ray is (depth_at_labels).
- ground: a plain camera at a known pose above flat ground. Each pixel's ray meets the ground
  plane at t = -h / (up . r); pixels whose ray points at or above the horizon, or meets the
  ground beyond `max_range`, are NaN. Objects standing on the ground (`standing` class ids)
  would smear along their rays: each column's run of such pixels is placed at the ground point
  of its lowest pixel, where the object touches the ground. This is wrong on slopes (the plane
  is not the ground), for overhangs (a run's lowest pixel is not its contact) and for objects
  whose bottom is hidden (they land behind where they are).

Everything is vectorised over the image: no per-pixel Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Values of the node's `points` parameter: no cloud, or one from either source above.
POINTS_MODES = ("off", "depth", "ground")
DEPTH_ENCODINGS = {"16UC1": (np.uint16, 0.001), "mono16": (np.uint16, 0.001),
                   "32FC1": (np.float32, 1.0)}
# PointCloud2 layout: x, y, z float32, label and confidence uint8, padded to 16 bytes.
POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "label", "confidence"],
                        "formats": ["<f4", "<f4", "<f4", "u1", "u1"],
                        "offsets": [0, 4, 8, 12, 13], "itemsize": 16})
POINT_FIELDS = (("x", 0, "float32"), ("y", 4, "float32"), ("z", 8, "float32"),
                ("label", 12, "uint8"), ("confidence", 13, "uint8"))


class PointsError(ValueError):
    """Input the point cloud cannot be computed from; the message names the problem."""


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_k(cls, k, topic: str = "camera_info") -> Intrinsics:
        """From a row-major K; `topic` names where it came from in the error."""
        k = [float(v) for v in k]
        if len(k) != 9 or k[0] <= 0 or k[4] <= 0:
            raise PointsError(f"{topic} K is not a calibrated pinhole: {k} (fx, fy > 0)")
        return cls(k[0], k[4], k[2], k[5])

    def rays(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(x / z, y / z) of each pixel centre's ray: [1, W] and [H, 1] float32."""
        u = (np.arange(width, dtype=np.float32) - np.float32(self.cx)) / np.float32(self.fx)
        v = (np.arange(height, dtype=np.float32) - np.float32(self.cy)) / np.float32(self.fy)
        return u[None, :], v[:, None]


def depth_in_metres(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """A sensor_msgs/Image depth payload -> float32 [H, W] metres (invalid: NaN)."""
    if encoding not in DEPTH_ENCODINGS:
        raise PointsError(f"depth encoding {encoding!r} is not one of "
                          f"{sorted(DEPTH_ENCODINGS)} (16UC1 or mono16 millimetres, 32FC1 "
                          "metres)")
    dtype, scale = DEPTH_ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    if height < 1 or width < 1 or step < width * itemsize or len(data) < step * height:
        raise PointsError(f"depth image {width}x{height} step {step} with {len(data)} bytes "
                          "is malformed")
    rows = np.frombuffer(data, np.uint8, count=step * height).reshape(height, step)
    depth = rows[:, :width * itemsize].copy().view(dtype).reshape(height, width)
    metres = depth.astype(np.float32) * np.float32(scale)
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


def nearest_source_pixels(size: int, source_size: int) -> np.ndarray:
    """int64 [size]: for each pixel index i of an image resized from `source_size` to `size`
    pixels along one axis, the source pixel nearest to i * source_size / size (round half up,
    within the image). That is where the ray of pixel i is when K is scaled by
    size / source_size without a half-pixel shift, as image_proc's resize and
    labels/camera_info scale it: (2i) at a scale of 0.5."""
    index = np.arange(size, dtype=np.int64)
    # floor(i * source / size + 1/2) in integers: exact, no float ties
    return np.minimum((2 * index * source_size + size) // (2 * size), source_size - 1)


def nearest_stamp(stamps: list[int], target: int, tolerance: int) -> int | None:
    """Index of the stamp (ns, in arrival order) nearest to `target`, within `tolerance`; of
    equally near ones the newest (the last received: a repeated stamp is a re-sent image, and
    the latest is the one to trust); None when none is near enough."""
    best = None
    for index, stamp in enumerate(stamps):
        if abs(stamp - target) <= tolerance and (
                best is None or abs(stamp - target) <= abs(stamps[best] - target)):
            best = index
    return best


def depth_at_labels(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Depth at the label size, taken where each label pixel's ray is: label pixel (u, v),
    back-projected with K scaled to the label size, looks along the ray of depth pixel
    (u W / width, v H / height), so it takes the depth of the nearest depth pixel
    (nearest_source_pixels; (2u, 2v) at output_scale 0.5). Never a blend: averaging depths
    across an edge would put points in the air between the two surfaces."""
    if depth.shape == (height, width):
        return depth
    rows = nearest_source_pixels(height, depth.shape[0])
    cols = nearest_source_pixels(width, depth.shape[1])
    return depth[rows][:, cols]


def point_slots(height: int, width: int) -> np.ndarray:
    """An empty float32 [H, W, 4] buffer: x, y, z and a slot whose bytes pack_cloud fills with
    label and confidence (the cloud's own layout, so no copy between the two)."""
    return np.empty((height, width, 4), np.float32)


def points_from_depth(depth: np.ndarray, intrinsics: Intrinsics,
                      out: np.ndarray | None = None) -> np.ndarray:
    """float32 [H, W, 3] camera-frame points of a metric depth image (NaN where invalid);
    with `out` (point_slots), written into its first three slots and `out` returned."""
    x_over_z, y_over_z = intrinsics.rays(*depth.shape)
    if out is None:
        return np.stack(np.broadcast_arrays(x_over_z * depth, y_over_z * depth, depth), axis=-1)
    np.multiply(x_over_z, depth, out=out[..., 0])
    np.multiply(y_over_z, depth, out=out[..., 1])
    out[..., 2] = depth
    return out


@dataclass(frozen=True)
class GroundPose:
    """The camera above flat ground: height (m) of the optical centre, pitch (rad, positive
    looking down), roll (rad, positive turning the image clockwise as seen from behind)."""

    height: float
    pitch: float = 0.0
    roll: float = 0.0

    def __post_init__(self) -> None:
        if not (self.height > 0) or not math.isfinite(self.height):
            raise PointsError(f"ground height {self.height} m must be > 0")
        if not all(math.isfinite(a) and abs(a) < math.pi / 2 for a in (self.pitch, self.roll)):
            raise PointsError(f"ground pitch {self.pitch} and roll {self.roll} rad must be "
                              "within +-pi/2")

    def up(self) -> np.ndarray:
        """The world's up direction in the optical frame."""
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        # level camera: up = -y; pitch down tilts it towards -z; roll turns it in the image
        return np.array([-sr * cp, -cr * cp, -sp], np.float64)


def ground_points(height: int, width: int, intrinsics: Intrinsics, pose: GroundPose,
                  max_range: float) -> np.ndarray:
    """float32 [H, W, 3] ground points of each pixel's ray (NaN above the horizon or beyond
    `max_range` metres from the camera): the same for every frame of one camera and size."""
    x_over_z, y_over_z = intrinsics.rays(height, width)
    up = pose.up().astype(np.float32)
    # ray r = (x/z, y/z, 1); t = -h / (up . r) where the ray points downward (up . r < 0)
    facing = up[0] * x_over_z + up[1] * y_over_z + up[2]  # [H, W]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(facing < -1e-6, np.float32(-pose.height) / facing, np.nan)
    points = np.stack(np.broadcast_arrays(x_over_z * t, y_over_z * t, t), axis=-1)
    points = points.astype(np.float32, copy=False)
    distance = np.sqrt((points ** 2).sum(-1))
    points[~(distance <= max_range)] = np.nan  # also NaN stays NaN
    return points


def place_standing(ground: np.ndarray, labels: np.ndarray, standing: np.ndarray) -> np.ndarray:
    """`ground` points (from ground_points) with each column's run of standing pixels (a bool
    [256] table of class ids) at the ground point of the run's lowest pixel."""
    height, width = labels.shape
    if ground.shape[:2] != (height, width):
        raise PointsError(f"labels {labels.shape} do not match the points {ground.shape[:2]}")
    on_ground = standing[labels]  # [H, W] bool
    if not on_ground.any():
        return ground
    rows = np.arange(height, dtype=np.int32)[:, None]
    # the first row at or below each pixel that is not standing; the run's lowest pixel is
    # the one above it (reverse cumulative minimum down each column)
    breaks = np.where(on_ground, np.int32(height), rows)
    next_break = np.minimum.accumulate(breaks[::-1], axis=0)[::-1]
    r, c = np.nonzero(on_ground)
    placed = ground.copy()
    placed[r, c, :3] = ground[next_break[r, c] - 1, c, :3]
    return placed


def points_on_ground(height: int, width: int, intrinsics: Intrinsics, pose: GroundPose,
                     max_range: float, labels: np.ndarray | None = None,
                     standing: np.ndarray | None = None) -> np.ndarray:
    """ground_points, then place_standing where `labels` and `standing` are given."""
    points = ground_points(height, width, intrinsics, pose, max_range)
    if labels is None or standing is None or not standing.any():
        return points
    if labels.shape != (height, width):
        raise PointsError(f"labels {labels.shape} do not match the image {height}x{width}")
    return place_standing(points, labels, standing)


def standing_table(class_names: tuple[str, ...], standing: list[str] | tuple[str, ...]
                   ) -> np.ndarray:
    """bool [256]: which label ids are classes standing on the ground."""
    unknown = [name for name in standing if name not in class_names]
    if unknown:
        raise PointsError(f"ground_standing_classes {unknown} are not among the output classes "
                          f"{list(class_names)}")
    table = np.zeros(256, bool)
    for name in standing:
        table[class_names.index(name)] = True
    return table


def pack_cloud(points: np.ndarray, labels: np.ndarray,
               confidence: np.ndarray | None) -> bytes:
    """The PointCloud2 `data` of an organized cloud: POINT_DTYPE per pixel, row-major.
    `points` is [H, W, 3], or a point_slots buffer [H, W, 4] (its last slot is overwritten)."""
    height, width = labels.shape
    if points.shape[:2] != (height, width) or points.shape[2] not in (3, 4):
        raise PointsError(f"points {points.shape} do not match the labels {labels.shape}")
    # 16 bytes a point written as 4 float32 slots, the last one's bytes holding label and
    # confidence: plain strided copies, several times faster than a structured array's fields
    if points.shape[2] == 4 and points.dtype == np.float32 and points.flags.c_contiguous:
        cloud = points
    else:
        cloud = point_slots(height, width)
        cloud[..., :3] = points
    tail = cloud.view(np.uint8).reshape(height, width, 16)[..., 12:]
    tail[..., 0] = labels
    tail[..., 1] = 0 if confidence is None else confidence
    tail[..., 2:] = 0
    return cloud.tobytes()
