#!/usr/bin/env python3
"""Cost of labels/points per frame (issue 24): the node's own path, PointsOutput.cloud (depth
back-projection or flat-ground rays with standing classes, packing, the PointCloud2 message),
at 480x360 and 1280x720, depth and ground modes interleaved, on this CPU.

    .venv/bin/python scripts/bench_points.py --json training/results/points_cost.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from textseg.cpu import cpu_features, write_results
from textseg.node.points_output import PointsOutput
from textseg.points import GroundPose

SIZES = ((360, 480), (720, 1280))
CAMVID = ("sky", "building", "pole", "road", "sidewalk", "tree", "traffic sign", "fence", "car",
          "pedestrian", "bicyclist")


def _inputs(height: int, width: int, stamp: Time):
    info = CameraInfo()
    info.height, info.width = height, width
    info.k = [0.9 * width, 0.0, width / 2, 0.0, 0.9 * width, height / 2, 0.0, 0.0, 1.0]
    rng = np.random.default_rng(0)
    depth = Image()
    depth.header.stamp = stamp
    depth.height, depth.width, depth.encoding, depth.step = height, width, "16UC1", 2 * width
    depth.data = rng.integers(500, 20000, (height, width), dtype=np.uint16).tobytes()
    labels = np.full((height, width), 3, np.uint8)  # road, with cars and poles standing on it
    labels[: height // 3] = 0
    for col in range(0, width, 40):
        labels[height // 2: height // 2 + height // 6, col: col + 20] = 8 if col % 80 else 2
    confidence = rng.integers(0, 256, (height, width), dtype=np.uint8)
    return info, depth, labels, confidence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    standing = np.zeros(256, bool)
    standing[[2, 8, 9, 10]] = True  # pole, car, pedestrian, bicyclist
    outputs = {"depth": PointsOutput("depth", None),
               "ground": PointsOutput("ground", None, pose=GroundPose(1.5, math.radians(8)),
                                      standing=standing)}
    rows = []
    for height, width in SIZES:
        stamp = Time(sec=height, nanosec=0)  # one depth image per size in the buffer
        header = Header(stamp=stamp, frame_id="cam")
        info, depth, labels, confidence = _inputs(height, width, stamp)
        for output in outputs.values():
            output.on_camera_info(info)
            output.on_depth(depth)
        times: dict[str, list[float]] = {mode: [] for mode in outputs}
        for _ in range(args.repeats):  # interleaved: drift hits both modes alike
            for mode, output in outputs.items():
                started = time.perf_counter()
                output.cloud(header, labels, confidence, (height, width))
                times[mode].append(time.perf_counter() - started)
        for mode, values in times.items():
            values = sorted(values[3:])  # the first calls warm caches
            rows.append({"mode": mode, "size": f"{width}x{height}",
                         "p50_ms": round(1000 * statistics.median(values), 2),
                         "p90_ms": round(1000 * values[int(0.9 * (len(values) - 1))], 2)})
    print(f"labels/points per frame on {cpu_features().describe()}")
    print("| mode | size | p50 ms | p90 ms |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['mode']} | {row['size']} | {row['p50_ms']} | {row['p90_ms']} |")
    if args.json:
        write_results(args.json, {"command": "scripts/bench_points.py " + " ".join(sys.argv[1:]),
                                  "repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
