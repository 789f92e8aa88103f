"""`textseg fp16`: a float16 copy of a textseg model, for TensorRT's strongly typed builds.

TensorRT 11 takes precision from the ONNX only, so an fp16 engine needs an fp16 model. The
conversion is ONNX Runtime's maintained float16 converter (onnxruntime.transformers.float16),
with the graph's interface kept (uint8 image in, uint8 labels and confidence out) and the
precision-sensitive ops left in float32: every Resize (its coordinate and scale inputs), the
confidence's ReduceMax, Exp, ReduceSum and Reciprocal (or an older model's Softmax), and every Cast
(so the image is cast to float32 first
and the labels still go ArgMax -> float -> uint8). The result is checked against TensorRT's
parser rules and, on camera frames, for label agreement with the fp32 model.

Needs the `onnx` package.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.engine.contract import INPUT_NAME, LABELS_OUTPUT
from textseg.fileio import atomic_write_bytes

# Softmax: models exported before the confidence became 1 / ReduceSum(Exp(l - ReduceMax l)).
KEEP_FLOAT32 = ("Resize", "Softmax", "ReduceMax", "ReduceSum", "Exp", "Reciprocal", "Cast")


@dataclass(frozen=True)
class Fp16Report:
    path: Path
    size_bytes: int
    frames: int
    agreement: float | None  # share of label pixels equal to the fp32 model's
    seconds: float


def convert_to_fp16(model: str | Path, output: str | Path,
                    check_frames: list[np.ndarray] | None = None) -> Fp16Report:
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel
    except ImportError as exc:
        raise RuntimeError(f"textseg fp16 needs the onnx package ({exc}); pip install onnx"
                           ) from None
    from textseg.engine.onnx_file import describe_model
    from textseg.engine.self_check import SELF_CHECK_KEY, check_images, make_self_check
    from textseg.engine.tensorrt_rules import require_tensorrt_rules

    model, output = Path(model), Path(output)
    source = describe_model(model)
    started = time.monotonic()
    half = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True,
                                    op_block_list=list(KEEP_FLOAT32))
    # The converter appends its casts out of order; ONNX Runtime's own model tools re-sort.
    OnnxModel(half).topological_sort()
    meta = {p.key: p.value for p in half.metadata_props}
    meta["precision"] = json.dumps({
        "weights_and_activations": "float16", "kept_float32": list(KEEP_FLOAT32),
        "tool": "onnxruntime.transformers.float16.convert_float_to_float16",
        "source_sha256": source.sha256})
    if SELF_CHECK_KEY not in meta and check_frames:
        # The fp32 source's labels on the first frames: what the fp16 file must reproduce.
        meta[SELF_CHECK_KEY] = make_self_check(
            model, check_images(check_frames, source.info.network_input_size)
        ).to_metadata()
    del half.metadata_props[:]
    for key, value in meta.items():
        entry = half.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(half)
    data = half.SerializeToString()
    require_tensorrt_rules(data, name=str(output))
    agreement = None
    if check_frames:
        full = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        reduced = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        same = total = 0
        for frame in check_frames:
            a = full.run([LABELS_OUTPUT], {INPUT_NAME: frame})[0]
            b = reduced.run([LABELS_OUTPUT], {INPUT_NAME: frame})[0]
            same += int((a == b).sum())
            total += a.size
        agreement = same / total
    atomic_write_bytes(output, data)
    return Fp16Report(output, len(data), len(check_frames or []), agreement,
                      time.monotonic() - started)

