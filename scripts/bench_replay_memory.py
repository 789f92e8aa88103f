#!/usr/bin/env python3
"""Memory benchmark of rosbag replay evaluation: does a big bag stream in flat memory?

Writes a bag of --frames 1280x720 rgb8 frames with mono8 ground truth (CamVid val frames
resized, cycled; synthetic frames where CamVid is absent) into a temporary folder, then
streams it and samples this process's resident memory (VmRSS) after every frame:

  read     BagSource.frames(): deserialise, match labels, decode every frame
  offline  `textseg eval-offline`'s loop: decode, ONNX Runtime, confusion matrix, report data
  replay   `textseg replay`'s loop (with --replay): through segmentation_node over DDS

Growth = the highest RSS after the warm-up frames minus the RSS at the end of the warm-up.
Pass: growth < --limit-mb (100) for every phase. Exit code 1 on a failure.

  .venv/bin/python scripts/bench_replay_memory.py                  # 1,000 frames: read, offline
  .venv/bin/python scripts/bench_replay_memory.py --replay         # + through the node
  .venv/bin/python scripts/bench_replay_memory.py --frames 200 --phases read
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


class RssTrace:
    """RSS after every frame; baseline = RSS once `warmup` frames are done."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.baseline: int | None = None
        self.peak = 0
        self.last = 0
        self.samples = 0
        self.start = rss_bytes()

    def __call__(self, frames_done: int) -> None:
        rss = rss_bytes()
        self.last = rss
        self.samples += 1
        if frames_done == self.warmup:
            self.baseline = rss
        elif self.baseline is not None:
            self.peak = max(self.peak, rss)

    def result(self) -> dict:
        base = self.baseline or self.start
        peak = max(self.peak, base)
        return {"rss_start_mb": round(self.start / 2**20, 1),
                "rss_after_warmup_mb": round(base / 2**20, 1),
                "rss_peak_after_warmup_mb": round(peak / 2**20, 1),
                "rss_end_mb": round(self.last / 2**20, 1),
                "growth_mb": round((peak - base) / 2**20, 1),
                "warmup_frames": self.warmup}


def source_frames(count: int, size: tuple[int, int]):
    """(rgb, labels) pairs at `size` (w, h): CamVid val resized, or synthetic."""
    images = sorted((CAMVID / "val").glob("*.png")) if (CAMVID / "val").is_dir() else []
    if not images:
        print("note: CamVid not found at ../shared/datasets/camvid: synthetic frames")
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(count):
            rgb = np.stack([(xx + i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1)
            yield rgb.astype(np.uint8), ((xx // 128 + yy // 72 + i) % 11).astype(np.uint8)
        return
    for i in range(count):  # read and resized one at a time: the writer streams too
        path = images[i % len(images)]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        labels = cv2.imread(str(CAMVID / "valannot" / path.name), cv2.IMREAD_UNCHANGED)
        yield (cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size,
                          interpolation=cv2.INTER_LINEAR),
               cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST))


def write_bag(path: Path, frames: int, size: tuple[int, int], storage: str) -> dict:
    from textseg.replay.bagio import DatasetMeta
    from textseg.replay.dataset import CAMVID_CLASSES, CAMVID_VOID, FrameBagWriter
    from textseg.replay.progress import Progress

    meta = DatasetMeta(dataset="camvid", class_names=CAMVID_CLASSES, ignore_id=CAMVID_VOID)
    started = time.perf_counter()
    progress = Progress("write bag", frames, unit="frames")
    with FrameBagWriter(path, storage, "/camera/image", "/camera/labels", meta) as writer:
        for i, (rgb, labels) in enumerate(source_frames(frames, size)):
            writer.write_frame(rgb, 1_700_000_000 * 10**9 + i * 100_000_000, labels)
            progress.update(i + 1)
    progress.close()
    size_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"frames": frames, "size": f"{size[0]}x{size[1]}", "storage": storage,
            "bytes": size_bytes, "seconds": round(time.perf_counter() - started, 1)}


def phase_read(bag: Path, warmup: int) -> dict:
    from textseg.replay.bagio import BagSource
    from textseg.replay.progress import Progress

    trace = RssTrace(warmup)
    started = time.perf_counter()
    checksum = 0
    with BagSource(bag) as source:
        progress = Progress("read", source.frame_count)
        for n, frame in enumerate(source.frames(), 1):
            rgb = frame.rgb()
            checksum += int(rgb[0, 0, 0]) + int(frame.labels[0, 0])
            trace(n)
            progress.update(n)
        progress.close()
    return {"frames": n, "seconds": round(time.perf_counter() - started, 1), **trace.result()}


def phase_offline(bag: Path, warmup: int, threads: int) -> dict:
    from textseg.replay.offline import evaluate_offline

    trace = RssTrace(warmup)
    started = time.perf_counter()
    run = evaluate_offline(bag, threads=threads, on_frame=trace, label="offline")
    return {"frames": run.scorer.frames_seen, "seconds": round(time.perf_counter() - started, 1),
            "miou": run.scorer.confusion.summary().miou, **trace.result()}


def phase_replay(bag: Path, warmup: int, threads: int) -> dict:
    from textseg.replay.ros_replay import ReplayOptions, run_replay

    trace = RssTrace(warmup)
    started = time.perf_counter()
    run = run_replay(ReplayOptions(bag=bag, threads=threads, on_frame=trace))
    return {"frames": run.scorer.frames_seen, "answered": run.scorer.answered_count,
            "seconds": round(time.perf_counter() - started, 1),
            "miou": run.scorer.confusion.summary().miou, **trace.result()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--phases", default="read,offline",
                        help="comma-separated: read, offline, replay")
    parser.add_argument("--replay", action="store_true", help="add the replay phase")
    parser.add_argument("--warmup", type=int, default=50, help="frames before the baseline")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--limit-mb", type=float, default=100.0)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write the temporary bag (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the bag")
    parser.add_argument("--output", type=Path,
                        default=Path("out") / "bench" / "replay_memory.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.replay and "replay" not in phases:
        phases.append("replay")
    workdir = Path(tempfile.mkdtemp(prefix="textseg_bench_bag_", dir=args.dir))
    bag = workdir / "bench_bag"
    results: dict = {"phases": {}}
    try:
        results["bag"] = write_bag(bag, args.frames, (width, height), args.storage)
        print(f"bag: {results['bag']['frames']} frames {args.size}, "
              f"{results['bag']['bytes'] / 2**30:.2f} GiB, written in "
              f"{results['bag']['seconds']} s", flush=True)
        for phase in phases:
            if phase == "read":
                results["phases"][phase] = phase_read(bag, args.warmup)
            elif phase == "offline":
                results["phases"][phase] = phase_offline(bag, args.warmup, args.threads)
            elif phase == "replay":
                results["phases"][phase] = phase_replay(bag, args.warmup, args.threads)
            else:
                raise SystemExit(f"unknown phase {phase!r}")
    finally:
        if args.keep:
            print(f"bag kept at {bag}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = True
    print(f"\n{'phase':<9}{'frames':>7}{'seconds':>9}{'RSS after warm-up':>19}"
          f"{'peak after':>13}{'end':>11}{'growth':>10}")
    for phase, r in results["phases"].items():
        passed = r["growth_mb"] < args.limit_mb
        ok &= passed
        print(f"{phase:<9}{r['frames']:>7}{r['seconds']:>9}{r['rss_after_warmup_mb']:>16} MB"
              f"{r['rss_peak_after_warmup_mb']:>10} MB{r['rss_end_mb']:>8} MB"
              f"{r['growth_mb']:>7} MB  {'ok' if passed else 'FAIL'}")
    results["limit_mb"] = args.limit_mb
    results["passed"] = ok
    from textseg.cpu import write_results

    write_results(args.output, results, indent=2)
    print(f"\nbag on disk {results['bag']['bytes'] / 2**30:.2f} GiB; growth limit "
          f"{args.limit_mb:g} MB: {'passed' if ok else 'FAILED'} ({args.output})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
