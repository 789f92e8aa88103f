"""What the load-time self-check costs: opening each model with the check on and off,
interleaved, and the check's own time and agreement.

  .venv/bin/python scripts/bench_self_check.py MODEL... [--rounds 5] [--json OUT]

Each round opens every model once with `self_check: off` and once with `refuse` (ONNX
Runtime, this CPU); the median of the rounds is reported. The JSON records the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    import numpy as np

    from textseg.cpu import cpu_features, write_results
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

    opened: dict[str, dict[str, list[float]]] = {
        str(m): {"off": [], "refuse": [], "check": []} for m in args.models}
    checks = {}
    for _ in range(args.rounds):
        for model in args.models:
            for policy in ("off", "refuse"):
                started = time.perf_counter()
                backend = OnnxRuntimeBackend(model, threads=args.threads, self_check=policy)
                opened[str(model)][policy].append(1000 * (time.perf_counter() - started))
                if backend.self_check is not None:
                    opened[str(model)]["check"].append(1000 * backend.self_check.seconds)
                    checks[str(model)] = backend.self_check.record()
                backend.close()
    results = {"command": "python scripts/bench_self_check.py " + " ".join(sys.argv[1:]),
               "threads": args.threads, "rounds": args.rounds, "models": {}}
    print(f"CPU: {cpu_features().describe()}\n")
    print("| model | open, check off ms | open, check on ms | the check ms | agreement |\n"
          "|---|---:|---:|---:|---:|")
    for name, times in opened.items():
        median = {k: round(float(np.median(v)), 1) if v else None for k, v in times.items()}
        check = checks.get(name)
        results["models"][name] = {"median_ms": median, "self_check": check}
        agreement = f"{100 * check['agreement']:.2f} %" if check else "none stored"
        print(f"| {Path(name).name} | {median['off']} | {median['refuse']} | "
              f"{median['check']} | {agreement} |")
    if args.json:
        write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
