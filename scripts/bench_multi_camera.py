"""Several cameras: one node with `cameras: [...]` against N separate single-camera nodes.

  .venv/bin/python scripts/bench_multi_camera.py [--cameras 1 2 4] [--size 480x360]
                                                [--seconds 20] [--factor 1.5] [--json FILE]

For each N, every camera publishes frames at FACTOR x (the backend's capacity / N), so the
offered total is the same FACTOR x capacity whatever N; measured over SECONDS after a warm-up:
total answered frames/s, latency p50/p99 (publish -> labels back, all cameras), the fewest
frames any camera got (fairness), and the resident memory of the node process(es). Both set-ups
run with the node defaults (ONNX Runtime, threads = all cores per process).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT.parent / "shared" / "datasets" / "camvid" / "val"


def _run(model: str, cameras: int, separate: bool, frames, rate_per_camera: float,
         seconds: float, warmup: float) -> dict:
    import rclpy
    import rclpy.executors
    from builtin_interfaces.msg import Time

    from textseg.client.frame_client import FrameClient
    from textseg.client.process import NodeProcess, local_ros_environment

    env = local_ros_environment()
    names = [f"cam{i}" for i in range(cameras)]
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes, clients = [], {}
    try:
        if separate:
            nodes = [NodeProcess({"model": model, "backend": "onnxruntime"}, env=env,
                                 namespace=f"/sep/{name}").start() for name in names]
            topics = {name: f"/sep/{name}" for name in names}
        else:
            nodes = [NodeProcess({"model": model, "backend": "onnxruntime", "cameras": names},
                                 env=env, namespace="/one").start()]
            topics = {name: f"/one/{name}" for name in names}
        for name in names:
            clients[name] = FrameClient(context=context, image_topic=f"{topics[name]}/image",
                                        labels_topic=f"{topics[name]}/labels/image",
                                        name=f"bench_{name}")
        for client in clients.values():
            client.wait_for_node(timeout=120.0, alive=lambda: all(n.alive() for n in nodes))
        # One executor for every client, slept on until the next send is due (labels wake it
        # earlier): a busy camera-driver loop would steal the node's CPU on a small machine.
        shared = rclpy.executors.SingleThreadedExecutor(context=context)
        for client in clients.values():
            shared.add_node(client.node)
        messages = {name: [clients[name].image_message(f, "rgb8", Time(), name) for f in frames]
                    for name in names}
        sent: dict[str, dict] = {name: {} for name in names}
        period = 1.0 / rate_per_camera
        start = time.perf_counter()
        measure_from, end = start + warmup, start + warmup + seconds
        next_send, index, rss = start, 0, []
        base = 1_800_000_000 + int(time.time()) % 100_000 * 10
        while (now := time.perf_counter()) < end:
            if now >= next_send:
                for name in names:
                    msg = messages[name][index % len(frames)]
                    msg.header.stamp = Time(sec=base + index // 1000,
                                            nanosec=(index % 1000) * 1000)
                    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                    sent[name][key] = clients[name].publish(msg)
                index += 1
                next_send = max(next_send + period, now - period)
                if now >= measure_from and index % 10 == 0:
                    rss.append(sum(n.rss_bytes() or 0 for n in nodes))
            shared.spin_once(timeout_sec=max(0.0, min(next_send, end) - time.perf_counter()))
        drain_until = time.perf_counter() + 0.5
        while time.perf_counter() < drain_until:
            shared.spin_once(timeout_sec=0.05)
        latencies, per_camera = [], {}
        for name in names:
            got = 0
            for key, (_, arrived) in clients[name].received.items():
                sent_at = sent[name].get(key)
                if sent_at is not None and measure_from <= sent_at < end:
                    latencies.append(arrived - sent_at)
                    got += 1
            per_camera[name] = got
    finally:
        for client in clients.values():
            client.close()
        for node in nodes:
            node.stop()
        rclpy.try_shutdown(context=context)
    return {
        "cameras": cameras, "setup": f"{cameras} separate nodes" if separate else
        f"one node, cameras: [{cameras}]", "total_fps": round(sum(per_camera.values()) / seconds,
                                                              2),
        "fewest_per_camera_fps": round(min(per_camera.values()) / seconds, 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1)
        if latencies else None,
        "latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 1)
        if latencies else None,
        "rss_mib": round(max(rss) / 2**20, 1) if rss else None,
    }


def main() -> int:
    from textseg.cli_args import parse_size
    from textseg.client.process import use_local_ros_environment
    from textseg.cpu import write_results
    from textseg.engine import BackendOptions, load_backend
    from textseg.tools.benchmark import bench_backend, load_frames

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "textseg_default.onnx"))
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--size", type=parse_size, default="480x360", metavar="WxH")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--factor", type=float, default=1.5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    # SIGTERM runs the clean-up (the node processes are stopped by PID), as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not CAMVID_VAL.is_dir():
        print(f"needs CamVid frames at {CAMVID_VAL}", file=sys.stderr)
        return 2
    use_local_ros_environment()
    frames = load_frames(CAMVID_VAL, args.size)
    backend = load_backend(args.model, BackendOptions(backend="onnxruntime"))
    capacity = bench_backend(backend, frames, 20).fps
    backend.close()
    print(f"backend alone: {capacity:.2f} FPS at {args.size[1]}x{args.size[0]}; offered "
          f"{args.factor:g}x that in total, split over the cameras", flush=True)
    rows = []
    for cameras in args.cameras:
        for separate in ((False,) if cameras == 1 else (False, True)):
            row = _run(args.model, cameras, separate, frames,
                       args.factor * capacity / cameras, args.seconds, args.warmup)
            print(row, flush=True)
            rows.append(row)
    lines = ["| set-up | total frames/s | fewest per camera | latency p50 ms | p99 ms | "
             "RSS MiB (all node processes) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['total_fps']} | {r['fewest_per_camera_fps']} | "
                     f"{r['latency_p50_ms']} | {r['latency_p99_ms']} | {r['rss_mib']} |")
    print("\n".join(lines))
    if args.json:
        report = {"command": "python scripts/bench_multi_camera.py " + " ".join(sys.argv[1:]),
                  "capacity_fps": round(capacity, 2), "size": f"{args.size[1]}x{args.size[0]}",
                  "cpu_cores": os.cpu_count(), "rows": rows}
        write_results(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
