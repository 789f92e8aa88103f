"""What labels/health costs per frame: the frame's summary (textseg.health.frame_stats) and the
window's judgement (HealthMonitor.add + assess), as the node's worker runs them after inference.

  .venv/bin/python scripts/bench_health.py [--frames 300] [--json OUT]

Labels and confidence come from the default model on CamVid val frames (480x360) once, before
timing; the timing covers only the health work, one thread, p50 / p99 in ms.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT.parent / "shared" / "datasets" / "camvid" / "val"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="timed frames")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--beside", default="",
                        help="what ran beside the timing, recorded in the JSON (e.g. 'a textseg "
                             "robustness replay')")
    args = parser.parse_args()
    files = sorted(CAMVID_VAL.glob("*.png"))[:20]
    if not files:
        print(f"CamVid val not found at {CAMVID_VAL}", file=sys.stderr)
        return 2
    import numpy as np

    from textseg.cpu import write_results
    from textseg.engine import BackendOptions, default_model_path, load_backend
    from textseg.engine.onnx_file import read_onnx_model
    from textseg.health import HealthMonitor, frame_stats, read_health_reference
    from textseg.replay.dataset import read_rgb

    model = default_model_path()
    backend = load_backend(model, BackendOptions(threads=1))
    k = backend.info.num_classes
    reference = read_health_reference(read_onnx_model(model).metadata, k)
    inputs = []
    for f in files:
        rgb = read_rgb(f)
        result = backend.infer(rgb, want_confidence=True)
        inputs.append((rgb, result.labels, result.confidence))
    backend.close()
    monitor = HealthMonitor(reference)
    times = []
    for i in range(args.frames + 20):
        rgb, labels, confidence = inputs[i % len(inputs)]
        started = time.perf_counter()
        monitor.add(frame_stats(rgb, labels, confidence, k))
        monitor.assess()
        if i >= 20:  # warm-up
            times.append(1000 * (time.perf_counter() - started))
    figures = {"p50_ms": round(float(np.percentile(times, 50)), 3),
               "p99_ms": round(float(np.percentile(times, 99)), 3),
               "frames": args.frames, "size": "480x360", "window": monitor.thresholds.window,
               "command": "python scripts/bench_health.py"
                          + (f" --frames {args.frames}" if args.frames != 300 else "")
                          + (f" --json {args.json}" if args.json else "")
                          + (f" --beside '{args.beside}'" if args.beside else ""),
               "conditions": "one thread" + (f"; beside it: {args.beside}" if args.beside
                                             else "; nothing else running")}
    print(f"health per frame at 480x360: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    if args.json:
        write_results(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
