"""Would batching frames of several cameras into one inference pay on this machine?

  .venv/bin/python scripts/bench_batching.py [--model MODEL] [--size 480x360] [--runs 20]

Makes a copy of MODEL whose batch dimension is symbolic (the graph is otherwise unchanged),
then times ONNX Runtime (CPU, all cores) on batches of 1, 2 and 4 frames: the time per frame
at batch B against batch 1 says whether one inference for B cameras beats B inferences.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT.parent / "shared" / "datasets" / "camvid" / "val"


def main() -> int:
    import onnx
    import onnxruntime as ort

    from textseg.cli_args import parse_size
    from textseg.tools.benchmark import load_frames

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "textseg_default.onnx"))
    parser.add_argument("--size", type=parse_size, default="480x360", metavar="WxH")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    if not CAMVID_VAL.is_dir():
        print(f"needs CamVid frames at {CAMVID_VAL}", file=sys.stderr)
        return 2
    model = onnx.load(args.model)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    frames = load_frames(CAMVID_VAL, args.size, count=max(args.batches))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "batched.onnx"
        onnx.save(model, str(path))
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        print(f"{Path(args.model).name} at {args.size[1]}x{args.size[0]}, ONNX Runtime "
              f"{ort.__version__} CPU, median of {args.runs} runs\n")
        print("| batch | ms per batch | ms per frame | vs batch 1 |\n|---:|---:|---:|---:|")
        per_frame_1 = None
        for batch in args.batches:
            images = np.stack(frames[:batch])
            try:
                outputs = session.run(None, {name: images})
            except Exception as exc:  # noqa: BLE001 - the graph may fix the batch at 1
                print(f"| {batch} | the graph does not run at batch {batch}: "
                      f"{str(exc).splitlines()[0][:120]} | | |")
                continue
            if outputs[0].shape[0] != batch:
                print(f"| {batch} | wrong output batch {outputs[0].shape} | | |")
                continue
            for _ in range(3):
                session.run(None, {name: images})
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                session.run(None, {name: images})
                times.append(time.perf_counter() - started)
            ms = statistics.median(times) * 1e3
            per_frame = ms / batch
            per_frame_1 = per_frame_1 or per_frame
            print(f"| {batch} | {ms:.1f} | {per_frame:.1f} | {per_frame_1 / per_frame:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
