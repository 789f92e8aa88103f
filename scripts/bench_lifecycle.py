"""What each lifecycle transition of segmentation_lifecycle_node costs, measured over DDS.

  .venv/bin/python scripts/bench_lifecycle.py [--model MODEL] [--cycles 3] [--json FILE]

A real node process is driven as a lifecycle manager drives it: configure -> activate ->
(first frame answered) -> deactivate -> cleanup, CYCLES times. Reported per step: the
service call's wall time (median over cycles) and the node's resident memory after it, so that
what configure loads and cleanup gives back is visible.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT.parent / "shared" / "datasets" / "camvid" / "val"
STEPS = ("configure", "activate", "first frame", "deactivate", "cleanup")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "textseg_default.onnx"))
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not CAMVID_VAL.is_dir():
        print(f"needs CamVid frames at {CAMVID_VAL}", file=sys.stderr)
        return 2
    import rclpy
    from lifecycle_msgs.msg import Transition

    from textseg.client.frame_client import FrameClient
    from textseg.client.lifecycle_client import LifecycleClient
    from textseg.client.process import NodeProcess, use_local_ros_environment
    from textseg.cpu import write_results
    from textseg.tools.benchmark import load_frames

    env = use_local_ros_environment()
    rgb = load_frames(CAMVID_VAL, (360, 480), count=1)[0]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = NodeProcess({"model": args.model, "backend": "onnxruntime"}, env=env,
                       namespace="/lifecycle_bench", lifecycle=True).start()
    client = FrameClient(context=context, image_topic="/lifecycle_bench/image",
                         labels_topic="/lifecycle_bench/labels/image", name="bench_manager")
    times = {step: [] for step in STEPS}
    rss = {"unconfigured": [], **{step: [] for step in STEPS}}
    try:
        manager = LifecycleClient(client, "/lifecycle_bench/segmentation_node")
        manager.state()  # services up
        rss["unconfigured"].append(node.rss_bytes())
        for _ in range(args.cycles):
            for step, transition in (("configure", Transition.TRANSITION_CONFIGURE),
                                     ("activate", Transition.TRANSITION_ACTIVATE),
                                     ("first frame", None),
                                     ("deactivate", Transition.TRANSITION_DEACTIVATE),
                                     ("cleanup", Transition.TRANSITION_CLEANUP)):
                started = time.perf_counter()
                if transition is None:
                    client.wait_for_node(timeout=30.0, alive=node.alive)
                    msg = client.image_message(rgb, "rgb8",
                                               client.node.get_clock().now().to_msg(), "cam")
                    if client.exchange(msg, timeout=30.0) is None:
                        raise RuntimeError("no answer after activate")
                elif not manager.transition(transition, timeout=300.0):
                    raise RuntimeError(f"{step} failed:\n{node.log_text()[-2000:]}")
                times[step].append(time.perf_counter() - started)
                rss[step].append(node.rss_bytes())
    finally:
        client.close()
        node.stop()
        rclpy.try_shutdown(context=context)
    rows = [{"step": step, "median_ms": round(statistics.median(times[step]) * 1e3, 1),
             "max_ms": round(max(times[step]) * 1e3, 1),
             "rss_after_mib": round(statistics.median(rss[step]) / 2**20, 1)} for step in STEPS]
    print(f"unconfigured: RSS {statistics.median(rss['unconfigured']) / 2**20:.1f} MiB")
    print("| step | median ms | max ms | node RSS after (MiB) |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['step']} | {r['median_ms']} | {r['max_ms']} | {r['rss_after_mib']} |")
    if args.json:
        report = {"command": "python scripts/bench_lifecycle.py " + " ".join(sys.argv[1:]),
                  "model": Path(args.model).name, "cycles": args.cycles,
                  "unconfigured_rss_mib": round(statistics.median(rss["unconfigured"]) / 2**20, 1),
                  "steps": rows}
        write_results(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
