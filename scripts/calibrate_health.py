"""Calibrate the labels' health score on training frames, never on the frames it is validated on.

  .venv/bin/python scripts/calibrate_health.py collect [--model M] [--sequences SEQ ...]
  .venv/bin/python scripts/calibrate_health.py fit [--json training/results/health_calibration.json]

`collect` runs the model (ONNX Runtime, as the node does) on CamVid *train* frames of the given
sequences, clean and under every corruption x severity of `textseg robustness`, and keeps per
frame the health summary (textseg.health.frame_stats) and the frame's confusion matrix
(out/health_calibration/frames_<sequences>.json). `fit` reads every such file and replays the
summaries through textseg.health.HealthMonitor in rolling windows of 30 frames within each
sequence, once per candidate weighting (HealthWeights), and prints, per candidate, what
`textseg robustness --health` reports on val: clean windows flagged, Spearman of score and
window mIoU, and the share flagged of the windows at severity >= 3 that lost >= 10 points.
The shipped weights are chosen here, on train frames; the validation through the node runs on
val (docs/robustness.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"
WORK = ROOT / "out" / "health_calibration"
IGNORE_ID = 11


def collect(args) -> int:
    from textseg.engine import BackendOptions, default_model_path, load_backend
    from textseg.health import frame_stats
    from textseg.replay.corruptions import FAMILIES, SEVERITIES, corrupt
    from textseg.replay.dataset import read_labels, read_rgb
    from textseg.replay.metrics import ConfusionMatrix
    from textseg.replay.robustness import frame_seed

    model = args.model or default_model_path()
    backend = load_backend(model, BackendOptions(threads=args.threads))
    k = backend.info.num_classes
    files = sorted(p for p in (CAMVID / "train").glob("*.png")
                   if p.name.split("_")[0] in args.sequences)
    if not files:
        print(f"no CamVid train frames of {args.sequences} under {CAMVID}", file=sys.stderr)
        return 2
    frames = [(read_rgb(f), read_labels(CAMVID / "trainannot" / f.name)) for f in files]
    conditions = [("clean", 0)] + [(f, s) for f in FAMILIES for s in SEVERITIES]
    records = []
    started = time.monotonic()
    for number, (family, severity) in enumerate(conditions, 1):
        for index, (path, (rgb, truth)) in enumerate(zip(files, frames, strict=True)):
            image = rgb if family == "clean" else corrupt(rgb, family, severity,
                                                          frame_seed(0, index))
            result = backend.infer(image, want_confidence=True)
            stats = frame_stats(image, result.labels, result.confidence, k)
            matrix = ConfusionMatrix(k, IGNORE_ID).update(result.labels, truth)
            records.append({"family": family, "severity": severity,
                            "sequence": path.name.split("_")[0], "index": index,
                            "stats": _stats_record(stats), "matrix": matrix.tolist()})
        print(f"[{number}/{len(conditions)}] {family} {severity} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"frames_{'_'.join(args.sequences)}.json"
    out.write_text(json.dumps({"model": str(model), "sequences": args.sequences,
                               "records": records}))
    print(f"wrote {out}")
    return 0


def _stats_record(stats) -> dict:
    record = asdict(stats)
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in record.items()}


def fit(args) -> int:
    from textseg.cpu import write_results
    from textseg.engine import default_model_path
    from textseg.engine.onnx_file import read_onnx_model
    from textseg.health import (
        FrameStats,
        HealthMonitor,
        HealthThresholds,
        HealthWeights,
        read_health_reference,
    )
    from textseg.replay.metrics import scores
    from textseg.replay.robustness import spearman

    parts = [json.loads(f.read_text()) for f in sorted(WORK.glob("frames_*.json"))]
    if not parts:
        print(f"nothing collected in {WORK}: run `collect` first", file=sys.stderr)
        return 2
    model = parts[0]["model"] or str(default_model_path())
    records = [r for part in parts for r in part["records"]]
    sequences = sorted(s for part in parts for s in part["sequences"])
    k = len(records[0]["matrix"])
    reference = read_health_reference(read_onnx_model(model).metadata, k)
    streams: dict[tuple, list] = {}
    for r in records:
        s = r["stats"]
        stats = FrameStats(**{**s, "confidence_hist": np.asarray(s["confidence_hist"]),
                              "class_share": np.asarray(s["class_share"])})
        streams.setdefault((r["family"], r["severity"], r["sequence"]), []).append(
            (stats, np.asarray(r["matrix"])))
    window = HealthThresholds().window  # the node's default health_window

    def windows(weights) -> list[tuple]:
        found = []
        for (family, severity, sequence), frames in streams.items():
            monitor = HealthMonitor(reference, weights=weights)
            for i, (stats, _) in enumerate(frames):
                monitor.add(stats)
                if i + 1 >= window:
                    matrix = sum(m for _, m in frames[i + 1 - window:i + 1])
                    found.append((family, severity, sequence, i, monitor.score(),
                                  100 * scores(matrix).miou))
        return found

    def judge(weights, warn_below: float) -> dict:
        found = windows(weights)
        clean = {(w[2], w[3]): w[5] for w in found if w[0] == "clean"}
        flagged_clean = [w[4] < warn_below for w in found if w[0] == "clean"]
        fell = [w for w in found if w[1] >= 3 and clean[(w[2], w[3])] - w[5] >= 10]
        per_family = {}
        for w in fell:
            per_family.setdefault(w[0], []).append(w[4] < warn_below)
        mild = [w for w in found if w[0] != "clean" and clean[(w[2], w[3])] - w[5] < 5]
        return {"clean_flagged": float(np.mean(flagged_clean)),
                "spearman": spearman([w[4] for w in found], [w[5] for w in found]),
                "fell": len(fell), "fell_flagged": float(np.mean([w[4] < warn_below
                                                                 for w in fell])),
                "worst_family_flagged": min(float(np.mean(v)) for v in per_family.values()),
                "per_family_flagged": {f: round(float(np.mean(v)), 3)
                                       for f, v in sorted(per_family.items())},
                "mild_flagged": float(np.mean([w[4] < warn_below for w in mild])),
                "clean_score_min": min(w[4] for w in found if w[0] == "clean")}

    shipped = HealthWeights()
    warn_below = HealthThresholds().warn_below
    grid = {"sharpness": [0.2, 0.3, 0.45, 0.6], "brightness": [0.1, 0.2],
            "brightness_margin": [1.0, 1.5], "saturation": [0.0, 0.5, 1.0, 2.0]}
    rows = []
    for values in itertools.product(*grid.values()):
        weights = replace(shipped, **dict(zip(grid, values, strict=True)))
        # the threshold stays the shipped one: clean training frames sit closer to the
        # reference than a new street's, so a threshold fitted here would be too high there
        rows.append({"weights": asdict(weights), "warn_below": warn_below,
                     **judge(weights, warn_below)})
    # the calibration's rule, in the validation's order: the fewest clean windows flagged,
    # then the fewest families whose fallen windows (severity >= 3, >= 10 points) are flagged
    # less than 90 %, then the rank correlation of score and mIoU
    rows.sort(key=lambda r: (round(r["clean_flagged"], 3),
                             sum(v < 0.9 for v in r["per_family_flagged"].values()),
                             -(r["spearman"] or 0)))
    print("| sharpness | brightness | margin | saturation | warn | clean flagged | Spearman "
          "| fell flagged | worst family | mild flagged |")
    for r in rows[:12]:
        w = r["weights"]
        print(f"| {w['sharpness']} | {w['brightness']} | {w['brightness_margin']} | "
              f"{w['saturation']} | {r['warn_below']} | {100 * r['clean_flagged']:.1f} | "
              f"{r['spearman']:.3f} | {100 * r['fell_flagged']:.1f} | "
              f"{100 * r['worst_family_flagged']:.1f} | {100 * r['mild_flagged']:.1f} |")
    shipped_row = {"weights": asdict(shipped), "warn_below": warn_below,
                   **judge(shipped, warn_below)}
    write_results(args.json, {"command": "python scripts/calibrate_health.py fit",
                              "frames": f"CamVid train, sequences {sequences}, clean "
                                        "and every corruption x severity (seed 0)",
                              "model": Path(model).name, "window": window,
                              "shipped": shipped_row, "grid_ranked": rows})
    print(f"shipped weights: {shipped_row}")
    print(f"wrote {args.json}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("collect", help="run the model on corrupted train frames")
    c.add_argument("--model", default="")
    c.add_argument("--sequences", nargs="+", default=["0001TP", "0006R0", "0016E5"])
    c.add_argument("--threads", type=int, default=1)
    f = sub.add_parser("fit", help="score candidate weightings on the collected frames")
    f.add_argument("--json", type=Path,
                   default=ROOT / "training" / "results" / "health_calibration.json")
    args = parser.parse_args()
    return collect(args) if args.step == "collect" else fit(args)


if __name__ == "__main__":
    sys.exit(main())
