"""Which operators a model's time goes to, from ONNX Runtime's own profiler (`textseg profile`).

ONNX Runtime rewrites the graph before running it (Q/DQ pairs around a Conv become one
QLinearConv, Conv + activation fuse, ...), so the profile names the kernels that actually ran,
not the ops of the file: this is what tells whether an int8 model runs int8 kernels.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.engine.qdq_cpu import uint8_activations


@dataclass(frozen=True)
class OpTime:
    op_type: str
    provider: str
    calls_per_run: float
    ms_per_run: float
    share: float  # of all kernel time


def profile_ops(model_path: str | Path, height: int, width: int, runs: int = 20,
                threads: int = 0, warmup: int = 3) -> tuple[list[OpTime], float]:
    """Kernel time per op type over `runs` inferences of a real-looking frame (after `warmup`
    unprofiled ones): ([OpTime] largest first, wall ms per run)."""
    import onnxruntime as ort

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        # The model as the ONNX Runtime backend loads it (int8 activations as uint8).
        model, _ = uint8_activations(Path(model_path).read_bytes())
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        # A smooth gradient image rather than noise: some kernels' cost depends on the data.
        y, x = np.mgrid[0:height, 0:width]
        image = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                          (x + y) % 256], axis=-1).astype(np.uint8)[None]
        # The warm-up runs are profiled too (the profiler starts with the session); they are
        # told apart below by counting runs.
        for _ in range(warmup + runs):
            session.run(None, {name: image})
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
    model_runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(model_runs) < warmup + runs:
        raise RuntimeError(f"profiler recorded {len(model_runs)} runs, expected {warmup + runs}")
    first_timed = model_runs[warmup]["ts"]
    wall_us = sum(e["dur"] for e in model_runs[warmup:])
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for event in events:
        if event.get("cat") != "Node" or event.get("ts", 0) < first_timed:
            continue
        if not event.get("name", "").endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        key = (args.get("op_name", "?"), args.get("provider", "?"))
        totals[key][0] += event["dur"]
        totals[key][1] += 1
    kernel_us = sum(v[0] for v in totals.values()) or 1.0
    rows = [OpTime(op, provider, count / runs, us / runs / 1e3, us / kernel_us)
            for (op, provider), (us, count) in totals.items()]
    rows.sort(key=lambda r: r.ms_per_run, reverse=True)
    return rows, wall_us / runs / 1e3


def op_table(rows: list[OpTime], wall_ms: float, title: str) -> str:
    lines = [f"{title}: {wall_ms:.2f} ms per run (wall, profiler on)", "",
             "| op (as run) | calls / run | ms / run | share of kernel time |",
             "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.op_type} | {r.calls_per_run:g} | {r.ms_per_run:.2f} | "
                     f"{100 * r.share:.1f}% |")
    return "\n".join(lines)
