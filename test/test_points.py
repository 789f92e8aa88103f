"""Labels in 3D without ROS (textseg.points): depth back-projection and flat-ground rays,
against geometry computed independently here."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from textseg.pipeline import labels_intrinsics
from textseg.points import (
    DEPTH_ENCODINGS,
    POINT_DTYPE,
    GroundPose,
    Intrinsics,
    PointsError,
    depth_at_labels,
    depth_in_metres,
    nearest_stamp,
    pack_cloud,
    points_from_depth,
    points_on_ground,
    standing_table,
)

ROOT = Path(__file__).resolve().parents[1]

K = Intrinsics(fx=400.0, fy=410.0, cx=239.5, cy=179.5)
H, W = 360, 480


def _plane_depth(normal, offset) -> np.ndarray:
    """Z of each pixel centre's ray on the plane normal . X = offset (NaN where it misses)."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1)
    with np.errstate(divide="ignore"):
        t = offset / (rays @ np.asarray(normal, np.float64))
    return np.where(t > 0, t, np.nan)


def test_depth_back_projection_is_the_pinhole_model_for_both_encodings():
    # a wall 3 m ahead on the left half, a floor 1.2 m below on the right half
    wall, floor = _plane_depth((0, 0, 1), 3.0), _plane_depth((0, 1, 0), 1.2)
    truth = np.where(np.arange(W)[None, :] < W // 2, wall, floor)
    truth[:10] = np.nan  # a strip of invalid depth
    truth[truth > 30.0] = np.nan  # the floor towards its horizon: past the sensor's range
    mm = np.nan_to_num(np.round(truth * 1000), nan=0).astype(np.uint16)
    for encoding, payload, tolerance in (("16UC1", mm, 0.0006), ("32FC1", truth.astype(np.float32),
                                                                    1e-5)):
        depth = depth_in_metres(encoding, H, W, W * payload.itemsize, payload.tobytes())
        points = points_from_depth(depth, K)
        valid = np.isfinite(truth)
        assert np.isnan(points[~valid]).all()
        u, v = np.meshgrid(np.arange(W), np.arange(H))
        expected = np.stack([(u - K.cx) / K.fx * truth, (v - K.cy) / K.fy * truth, truth], -1)
        assert np.abs(points[valid] - expected[valid]).max() < tolerance * 3
        # the two planes: the wall at Z = 3, the floor at Y = 1.2
        left, right = valid & (u < W // 2), valid & (u >= W // 2)
        assert np.allclose(points[left][:, 2], 3.0, atol=tolerance)
        assert np.allclose(points[right][:, 1], 1.2, atol=tolerance * 3)


def test_bad_depth_is_an_error_naming_the_problem():
    with pytest.raises(PointsError, match="depth encoding 'rgb8'"):
        depth_in_metres("rgb8", 2, 2, 6, bytes(12))
    with pytest.raises(PointsError, match="malformed"):
        depth_in_metres("16UC1", 4, 4, 8, bytes(16))  # two rows short
    padded = np.zeros((2, 4), np.uint16)
    padded[:, :3] = 1500  # a row step with padding: 3 pixels, 8 bytes a row
    depth = depth_in_metres("16UC1", 2, 3, 8, padded.tobytes())
    assert depth.shape == (2, 3) and np.allclose(depth, 1.5)
    assert depth_at_labels(np.arange(16, dtype=np.float32).reshape(4, 4), 2, 2).tolist() == \
        [[0.0, 2.0], [8.0, 10.0]]  # one depth pixel, never a blend of two surfaces
    with pytest.raises(PointsError, match=r"^depth/camera_info K is not a calibrated pinhole"):
        Intrinsics.from_k([0.0] * 9, "depth/camera_info")


@pytest.mark.parametrize("size", [(180, 240), (270, 360), (120, 160), (359, 479)])
def test_depth_is_taken_where_the_ray_of_each_label_pixel_is(size):
    """With labels smaller than the depth image (output_scale), label pixel (u, v) has the ray
    labels/camera_info's K gives it; its depth must come from the depth pixel that ray passes
    through (the nearest one), never from a neighbour. A distinct depth per pixel tells which
    pixel was taken; the ray is found independently by projecting it with the full-size K."""
    height, width = size
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    depth = (1.0 + (rows * W + cols) * 1e-5).astype(np.float32)  # 1.00000 .. 2.72799 m
    camera = SimpleNamespace(k=[K.fx, 0.0, K.cx, 0.0, K.fy, K.cy, 0.0, 0.0, 1.0], p=[0.0] * 12,
                             width=W, height=H, binning_x=0, binning_y=0,
                             roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0))
    small_k, _ = labels_intrinsics(camera, (H, W), size)  # what labels/camera_info publishes
    small = Intrinsics.from_k(small_k)
    points = points_from_depth(depth_at_labels(depth, height, width), small)
    # which depth pixel each label pixel took
    taken = np.round((points[..., 2].astype(np.float64) - 1.0) / 1e-5).astype(np.int64)
    taken_row, taken_col = np.divmod(taken, W)
    # where the label pixel's ray meets the full-size image
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    ray_x, ray_y = (u - small.cx) / small.fx, (v - small.cy) / small.fy
    at_col, at_row = K.fx * ray_x + K.cx, K.fy * ray_y + K.cy
    assert np.abs(taken_col - at_col).max() <= 0.5 + 1e-9
    assert np.abs(taken_row - at_row).max() <= 0.5 + 1e-9
    if (height * 2, width * 2) == (H, W):  # output_scale 0.5: exactly depth pixel (2u, 2v)
        assert (taken_col == 2 * u).all() and (taken_row == 2 * v).all()
        assert np.allclose(at_col, 2 * u) and np.allclose(at_row, 2 * v)
    # and the point lies on the label pixel's ray
    z = points[..., 2]
    assert np.allclose(points[..., 0] / z, ray_x, atol=1e-6)
    assert np.allclose(points[..., 1] / z, ray_y, atol=1e-6)


def test_the_node_reference_names_every_accepted_depth_encoding():
    reference = (ROOT / "docs" / "node.md").read_text(encoding="utf-8")
    row = next(line for line in reference.splitlines() if line.startswith("| `depth/image`"))
    assert [name for name in DEPTH_ENCODINGS if f"{name} " not in row] == [], row


def _world_from_camera(pose: GroundPose) -> np.ndarray:
    """Rotation taking optical-frame vectors to a level frame (x right, y down, z forward),
    built from rotations about the axes: roll about z, then pitch about x."""
    cr, sr, cp, sp = (math.cos(pose.roll), math.sin(pose.roll), math.cos(pose.pitch),
                      math.sin(pose.pitch))
    roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    return pitch @ roll


@pytest.mark.parametrize("pose", [GroundPose(1.5, math.radians(10)),
                                  GroundPose(1.2, math.radians(5), math.radians(3))])
def test_every_pixel_below_the_horizon_lands_on_the_ground_plane(pose):
    points = points_on_ground(H, W, K, pose, max_range=1e6)
    level = points.reshape(-1, 3) @ _world_from_camera(pose).T  # y down in the level frame
    hit = np.isfinite(level).all(-1)
    assert hit.mean() > 0.5
    assert np.allclose(level[hit, 1], pose.height, atol=1e-3)  # h below the camera
    # rays are kept: each point is along its pixel's ray
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    flat = points.reshape(-1, 3)
    assert np.allclose(flat[hit, 0] / flat[hit, 2], ((u - K.cx) / K.fx).ravel()[hit], atol=1e-5)
    if pose.roll == 0:
        # the horizon row, and the optical axis meeting the ground h / tan(pitch) ahead
        horizon = K.cy - K.fy * math.tan(pose.pitch)
        rows = np.arange(H)
        assert np.isnan(points[rows < horizon - 1]).all()
        assert np.isfinite(points[rows > horizon + 1]).all()
        centre = points_on_ground(H, W, Intrinsics(K.fx, K.fy, 240.0, 180.0), pose, 1e6)
        ahead = np.linalg.norm(centre[180, 240])
        assert ahead == pytest.approx(pose.height / math.sin(pose.pitch), rel=1e-4)


def test_range_limit_and_standing_objects_land_on_their_contact_row():
    pose = GroundPose(1.5, math.radians(10))
    points = points_on_ground(H, W, K, pose, max_range=20.0)
    distance = np.linalg.norm(points, axis=-1)
    assert np.nanmax(distance) <= 20.0 and np.isnan(points[:40]).all()
    labels = np.full((H, W), 3, np.uint8)  # road
    labels[200:251, 100:110] = 8  # a car whose bottom row is 250
    labels[150:181, 300] = 8  # another whose lowest pixel, row 180, is on the ground too
    table = standing_table(("sky", "building", "pole", "road", "sidewalk", "tree", "sign",
                            "fence", "car", "pedestrian", "bicyclist"), ["car"])
    placed = points_on_ground(H, W, K, pose, 1e6, labels, table)
    plain = points_on_ground(H, W, K, pose, 1e6)
    assert np.allclose(placed[200:251, 100:110], plain[250, 100:110][None], equal_nan=True)
    assert np.allclose(placed[150:181, 300], plain[180, 300][None])
    road = labels == 3
    assert np.array_equal(placed[road], plain[road], equal_nan=True)
    with pytest.raises(PointsError, match=r"\['truck'\] are not among"):
        standing_table(("car",), ["truck"])


def test_poses_outside_reason_are_refused():
    for bad in (dict(height=0.0), dict(height=1.0, pitch=2.0), dict(height=float("nan"))):
        with pytest.raises(PointsError):
            GroundPose(**bad)


def test_cloud_layout_is_x_y_z_float_then_label_and_confidence_bytes():
    points = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    points[0, 0] = np.nan
    labels = np.array([[1, 2, 3], [4, 5, 255]], np.uint8)
    confidence = np.array([[10, 20, 30], [40, 50, 0]], np.uint8)
    data = pack_cloud(points, labels, confidence)
    assert len(data) == 6 * 16
    cloud = np.frombuffer(data, POINT_DTYPE).reshape(2, 3)
    assert np.isnan(cloud["x"][0, 0]) and cloud["z"][1, 2] == 17.0
    assert cloud["label"].tolist() == labels.tolist()
    assert cloud["confidence"].tolist() == confidence.tolist()
    assert np.frombuffer(pack_cloud(points, labels, None), POINT_DTYPE)["confidence"].max() == 0


def test_the_depth_image_for_a_stamp_is_the_nearest_and_of_repeats_the_newest():
    """Depth images in arrival order: the nearest stamp within the tolerance wins; when a stamp
    repeats (a re-sent depth image), the last one received does."""
    assert nearest_stamp([10, 20, 20, 30], 20, 0) == 2
    assert nearest_stamp([20, 10, 20], 20, 5) == 2
    assert nearest_stamp([10, 22, 18, 40], 20, 5) == 2  # equally near: the newest
    assert nearest_stamp([10, 21, 40], 20, 5) == 1
    assert nearest_stamp([10, 40], 20, 5) is None
    assert nearest_stamp([], 20, 5) is None
