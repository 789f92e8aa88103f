"""Latency of several models, interleaved: every model once per round, many rounds.

  .venv/bin/python scripts/bench_interleaved.py MODEL... [--rounds 10] [--runs 15] [--json OUT]

On a shared or virtualised 2-core machine the speed drifts by 20-30 % within minutes, so models
measured one after the other are compared under different conditions. Here each round runs
every model `--runs` times on CamVid val frames (480x360) through the ONNX Runtime backend as the
node loads it; the figure per model is the median of its per-round medians.
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
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=15, help="inferences per model per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    frames = sorted(CAMVID_VAL.glob("*.png"))[:10]
    if not frames:
        print(f"CamVid val not found at {CAMVID_VAL}", file=sys.stderr)
        return 2
    import cv2
    import numpy as np

    from textseg.cpu import write_results
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

    images = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in frames]
    backends = {str(m): OnnxRuntimeBackend(m, threads=args.threads) for m in args.models}
    for backend in backends.values():
        for image in images[:3]:
            backend.infer(image)  # warm-up
    rounds: dict[str, list[float]] = {name: [] for name in backends}
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.rounds):
        for name, backend in backends.items():
            these = []
            for i in range(args.runs):
                started = time.perf_counter()
                backend.infer(images[i % len(images)])
                these.append(1000 * (time.perf_counter() - started))
            rounds[name].append(float(np.median(these)))
            times[name] += these
    results = {"command": "python scripts/bench_interleaved.py " + " ".join(sys.argv[1:]),
               "input": "CamVid val frames, 480x360", "threads": args.threads,
               "models": {name: {"description": backends[name].description,
                                 "median_of_round_medians_ms": round(float(np.median(r)), 2),
                                 "round_medians_ms": [round(v, 1) for v in r],
                                 "p50_ms": round(float(np.percentile(times[name], 50)), 2),
                                 "p99_ms": round(float(np.percentile(times[name], 99)), 2),
                                 "inferences": len(times[name])}
                          for name, r in rounds.items()}}
    first = next(iter(results["models"].values()))["median_of_round_medians_ms"]
    from textseg.cpu import cpu_features

    print(f"CPU: {cpu_features().describe()}")
    print("| model | median of round medians ms | p50 | p99 | vs the first |\n"
          "|---|---:|---:|---:|---:|")
    for name, figures in results["models"].items():
        ms = figures["median_of_round_medians_ms"]
        print(f"| {name} | {ms:.1f} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | "
              f"{first / ms:.2f}x |")
    if args.json:
        write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
