"""Soak test (not in CI): hours-like load on one node, every message accounted for.

  .venv/bin/python scripts/soak.py [--minutes 10] [--factor 3] [--size 480x360]
                                   [--fuzz-messages 10000] [--json FILE] [--markdown FILE]

1. A real segmentation_node process (this machine's DDS only) gets camera frames at FACTOR x
   its measured capacity for MINUTES, with every output subscribed (labels, colour, overlay,
   confidence, camera_info). Reported per window of WINDOW seconds: answered frames, latency
   p50/p99 (publish -> labels back), the node's RSS; and at the end the accounting identity
   received = processed + dropped + rejected + failed + skipped (nothing unexplained), with
   published - received (lost in DDS before the node) and processed - answered (labels lost
   on the way back) shown apart.
2. The malformed-message property test (test/ros/test_node_fuzz.py) at FUZZ_MESSAGES raw
   messages: the node must survive all of them and still answer.

Results: the JSON (every window and counter) and a markdown report (docs/soak.md by default).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT.parent / "shared" / "datasets" / "camvid" / "val"
OUTPUTS = ("labels/color", "labels/overlay", "labels/confidence")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def soak(model: str, size: tuple[int, int], minutes: float, factor: float, window_s: float,
         threads: int) -> dict:
    from sensor_msgs.msg import CameraInfo

    from textseg.engine import BackendOptions, load_backend
    from textseg.stats import StatKey
    from textseg.tools.benchmark import _RosSession, bench_backend, drive, load_frames

    frames = load_frames(CAMVID_VAL, size)
    engine = load_backend(model, BackendOptions(backend="onnxruntime", threads=threads,
                                                 input_size=size))
    capacity = bench_backend(engine, frames, 20).fps
    engine.close()
    rate = factor * capacity
    print(f"capacity {capacity:.2f} FPS (backend alone); publishing at {rate:.1f} Hz for "
          f"{minutes:g} min with every output subscribed", flush=True)
    session = _RosSession({"model": model, "backend": "onnxruntime", "threads": threads,
                           "publish_color": True, "publish_overlay": True,
                           "publish_confidence": True, "camera_info": True},
                          namespace="/soak", outputs=OUTPUTS)
    try:
        info_topic = session.client.node.create_publisher(CameraInfo, "/soak/camera_info", 10)
        camera_info = CameraInfo()
        camera_info.height, camera_info.width = size
        camera_info.k = [400.0, 0.0, size[1] / 2, 0.0, 400.0, size[0] / 2, 0.0, 0.0, 1.0]
        for _ in range(5):
            info_topic.publish(camera_info)
            session.client.spin_for(0.1)
        session.client.node.create_subscription(
            CameraInfo, "/soak/labels/camera_info", lambda msg: None, 10)
        started = time.perf_counter()
        result = drive(session, frames, rate, minutes * 60.0, warmup=0.0, sample_rss=True)
    finally:
        code = session.close()
    if code not in (0, None):
        raise RuntimeError(f"the node exited with {code}")
    windows = []
    total = minutes * 60.0
    for begin in np.arange(0.0, total, window_s):
        latencies = [lat for sent, lat in result.answered
                     if begin <= sent - started < begin + window_s]
        rss = [value for t, value in result.rss if begin <= t < begin + window_s]
        windows.append({"start_s": round(float(begin), 1), "answered": len(latencies),
                        "latency_p50_ms": round(_pct(latencies, 50), 2),
                        "latency_p99_ms": round(_pct(latencies, 99), 2),
                        "rss_mib": round(max(rss) / 2**20, 1) if rss else None})
    d = result.diagnostics
    count = {key: int(d.get(name, "0")) for key, name in (
        ("received", StatKey.MESSAGES_RECEIVED), ("processed", StatKey.FRAMES_PROCESSED),
        ("dropped", StatKey.FRAMES_DROPPED), ("rejected", StatKey.MESSAGES_REJECTED),
        ("failed", StatKey.INFERENCE_FAILURES), ("skipped", StatKey.FRAMES_SKIPPED))}
    explained = sum(count[k] for k in ("processed", "dropped", "rejected", "failed", "skipped"))
    return {
        "model": Path(model).name, "size": f"{size[1]}x{size[0]}", "minutes": minutes,
        "factor": factor, "capacity_fps": round(capacity, 2), "rate_hz": round(rate, 2),
        "published": result.published, "answered": len(result.answered), **count,
        "unexplained": count["received"] - explained,
        "lost_before_node": result.published - count["received"],
        "labels_lost_after_node": count["processed"] - len(result.answered),
        "windows": windows,
    }


def fuzz(messages: int) -> dict:
    env = dict(os.environ, TEXTSEG_FUZZ_RAW_MESSAGES=str(messages))
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "test/ros/test_node_fuzz.py", "-k", "not compressed"], cwd=ROOT,
                         env=env,
                         capture_output=True, text=True)
    tail = (run.stdout + run.stderr).strip().splitlines()[-1:]
    return {"messages": messages, "passed": run.returncode == 0, "summary": " ".join(tail),
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(report: dict, command: str) -> str:
    s = report["soak"]
    from textseg.cpu import cpu_features

    lines = ["# Soak test", "", f"Command: `{command}` (this machine: "
             f"{os.cpu_count()} cores of {cpu_features().describe()}, CPU only, ONNX Runtime).",
             "",
             f"{s['model']} at {s['size']}, {s['minutes']:g} min at {s['factor']:g}x the "
             f"backend's capacity ({s['capacity_fps']} FPS, published at {s['rate_hz']} Hz), "
             "every output subscribed.", "",
             "| accounting | messages |", "|---|---:|"]
    for key in ("published", "received", "processed", "dropped", "rejected", "failed",
                "skipped", "answered"):
        lines.append(f"| {key} | {s[key]} |")
    lines += [f"| received - (processed + dropped + rejected + failed + skipped) | "
              f"**{s['unexplained']}** |",
              f"| published - received (lost in DDS before the node) | {s['lost_before_node']} |",
              f"| processed - answered (labels lost after the node) | "
              f"{s['labels_lost_after_node']} |", "",
              "| window start (s) | answered | latency p50 (ms) | latency p99 (ms) | RSS (MiB) |",
              "|---:|---:|---:|---:|---:|"]
    for w in s["windows"]:
        lines.append(f"| {w['start_s']:g} | {w['answered']} | {w['latency_p50_ms']} | "
                     f"{w['latency_p99_ms']} | {w['rss_mib']} |")
    f = report.get("fuzz")
    if f:
        lines += ["", f"Malformed-message property test at {f['messages']} raw messages: "
                  f"{'passed' if f['passed'] else 'FAILED'} ({f['summary']}; {f['seconds']} s)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    from textseg.cli_args import parse_size
    from textseg.client.process import use_local_ros_environment
    from textseg.cpu import write_results
    from textseg.fileio import atomic_write_bytes

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "textseg_default.onnx"))
    parser.add_argument("--size", type=parse_size, default="480x360", metavar="WxH")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per report row")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--fuzz-messages", type=int, default=10_000, help="0: skip")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "soak.md")
    args = parser.parse_args()
    # SIGTERM runs the clean-up (the node processes are stopped by PID), as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not CAMVID_VAL.is_dir():
        print(f"soak: needs CamVid frames at {CAMVID_VAL}", file=sys.stderr)
        return 2
    use_local_ros_environment()
    report = {"soak": soak(args.model, args.size, args.minutes, args.factor, args.window,
                           args.threads)}
    if args.fuzz_messages > 0:
        report["fuzz"] = fuzz(args.fuzz_messages)
    command = "python scripts/soak.py " + " ".join(sys.argv[1:])
    text = markdown(report, command.strip())
    print(text)
    if args.json:
        write_results(args.json, report)
    if args.markdown:
        atomic_write_bytes(args.markdown, text.encode())
    ok = report["soak"]["unexplained"] == 0 and report.get("fuzz", {}).get("passed", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
