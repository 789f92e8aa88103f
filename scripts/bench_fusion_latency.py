"""ONNX Runtime CPU latency of the text fusions: no text, the TGM, the bridge at several sizes.

  .venv/bin/python scripts/bench_fusion_latency.py [--backbone efficientnet_lite0]
      [--bridge 1x64 2x128] [--size 480x360] [--rounds 3] [--frames 30] [--json FILE]

Each variant is exported like a trained model (deploy graph, uint8 image in, labels and
confidence out, 360x480 network size, MiniLM width 384, 11 classes) with random weights (speed
does not depend on them), then timed in alternating rounds so that a slow spell of a shared
machine lands on every variant alike; the figure is the median over rounds of each round's
median latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT.parent / "shared" / "datasets" / "camvid" / "val"


def main() -> int:
    import torch

    from textseg.cli_args import parse_size
    from textseg.cpu import write_results
    from textseg.engine import BackendOptions, load_backend
    from textseg.engine.contract import ModelInfo
    from textseg.tools.benchmark import load_frames
    from textseg_training.dataset_specs import CAMVID
    from textseg_training.export import export_onnx
    from textseg_training.model import SegModelConfig, build_model
    from textseg_training.model.complexity import count_gmacs, count_parameters

    def layers_by_width(text: str) -> tuple[int, int]:
        layers, width = (int(v) for v in text.lower().split("x"))
        return layers, width

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--bridge", nargs="+", type=layers_by_width, default=[(2, 128)],
                        metavar="NxD")
    parser.add_argument("--size", type=parse_size, default="480x360", metavar="WxH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not CAMVID_VAL.is_dir():
        print(f"needs CamVid frames at {CAMVID_VAL}", file=sys.stderr)
        return 2
    variants = [("no text", SegModelConfig(args.backbone, 11)),
                ("TGM", SegModelConfig(args.backbone, 11, 384, "tgm"))]
    variants += [(f"bridge N={n} d={d}", SegModelConfig(args.backbone, 11, 384, "bridge",
                                                         bridge_layers=n, bridge_width=d))
                 for n, d in args.bridge]
    frames = load_frames(CAMVID_VAL, args.size, count=8)
    backends, costs = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name, config in variants:
            torch.manual_seed(0)
            model = build_model(config, deploy=True).eval()
            if config.text_width:
                model.set_text_embeddings(torch.nn.functional.normalize(
                    torch.randn(11, config.text_width), dim=1))
            info = ModelInfo(class_names=CAMVID.class_names, palette=CAMVID.palette,
                             network_input_size=(360, 480), architecture=name,
                             dataset="camvid", training_stage="random-init")
            path = Path(folder) / f"{len(backends)}.onnx"
            export_onnx(model, info, path, model.backbone.input_mean, model.backbone.input_std,
                        with_confidence=True)
            costs[name] = (count_parameters(model), count_gmacs(model, (360, 480)))
            backends[name] = load_backend(path, BackendOptions(backend="onnxruntime",
                                                                threads=args.threads))
        rounds: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(args.rounds):
            for name, backend in backends.items():
                for frame in frames[:3]:
                    backend.infer(frame)
                times = []
                for i in range(args.frames):
                    started = time.perf_counter()
                    backend.infer(frames[i % len(frames)])
                    times.append(time.perf_counter() - started)
                rounds[name].append(statistics.median(times) * 1e3)
        for backend in backends.values():
            backend.close()
    base = statistics.median(rounds["no text"])
    rows = []
    print(f"{args.backbone}, {args.size[1]}x{args.size[0]} frames, ONNX Runtime CPU "
          f"{args.threads} threads, median over {args.rounds} rounds of {args.frames}\n")
    print("| variant | params | GMACs (360x480) | ORT p50 ms | vs no text |\n"
          "|---|---:|---:|---:|---:|")
    for name in backends:
        ms = statistics.median(rounds[name])
        params, gmacs = costs[name]
        rows.append({"variant": name, "params": params, "gmacs": round(gmacs, 3),
                     "p50_ms": round(ms, 2), "rounds_ms": [round(v, 2) for v in rounds[name]]})
        print(f"| {name} | {params:,} | {gmacs:.2f} | {ms:.1f} | {ms - base:+.1f} ms |")
    if args.json:
        report = {"command": "python scripts/bench_fusion_latency.py " + " ".join(sys.argv[1:]),
                  "backbone": args.backbone, "size": f"{args.size[1]}x{args.size[0]}",
                  "threads": args.threads, "rows": rows}
        write_results(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
