"""`textseg fp16`: a float16 copy of a textseg model, for TensorRT's strongly typed builds.

TensorRT 11 takes precision from the ONNX only, so an fp16 engine needs an fp16 model. The
conversion is ONNX Runtime's maintained float16 converter (onnxruntime.transformers.float16),
with the graph's interface kept (uint8 image in, uint8 labels and confidence out) and the
precision-sensitive ops left in float32: every Resize (its coordinate and scale inputs), the
confidence's ReduceMax, Exp, ReduceSum and Reciprocal (or an older model's Softmax), and every Cast
(so the image is cast to float32 first
and the labels still go ArgMax -> float -> uint8). The result is checked against TensorRT's
parser rules and, on camera frames, for label agreement with the fp32 model: counted like the
load-time self-check (pixels away from the fp32 labels' boundaries), a file below the fp16
threshold (99 %) would be refused by every node, so it is not written (Fp16ModelFailed; with
`keep_failed` it is kept as NAME.failed-self-check.onnx, like `textseg quantize`).

Needs the `onnx` package.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from textseg.engine.contract import INPUT_NAME, LABELS_OUTPUT
from textseg.engine.self_check import THRESHOLDS, SelfCheckFailed
from textseg.fileio import atomic_write_bytes

# Softmax: models exported before the confidence became 1 / ReduceSum(Exp(l - ReduceMax l)).
KEEP_FLOAT32 = ("Resize", "Softmax", "ReduceMax", "ReduceSum", "Exp", "Reciprocal", "Cast")


@dataclass(frozen=True)
class Fp16Report:
    path: Path | None  # None: failed its check and not kept
    size_bytes: int
    frames: int
    agreement: float | None  # share of all label pixels equal to the fp32 model's
    seconds: float
    interior_agreement: float | None = None  # the same away from label boundaries: decides
    interior_pixels: int = 0
    threshold: float = THRESHOLDS["fp16"]

    @property
    def passed(self) -> bool:
        return self.interior_agreement is None or self.interior_agreement >= self.threshold

    def describe_agreement(self) -> str:
        """The check's figures ('' when it did not run)."""
        if self.interior_agreement is None:
            return ""
        return (f"labels equal to fp32 on {100 * self.interior_agreement:.2f} % of the "
                f"{self.interior_pixels} pixels away from label boundaries (needs "
                f"{100 * self.threshold:.1f} % for fp16, as the load-time self-check) and on "
                f"{100 * self.agreement:.2f} % of all pixels, {self.frames} frames "
                "(ONNX Runtime CPU)")


class Fp16ModelFailed(SelfCheckFailed):
    """The fp16 file's labels disagree with fp32 on too many of the check frames' pixels, so
    it was not written under the requested name. `report.path`: where it was kept, or None."""

    def __init__(self, message: str, report: Fp16Report) -> None:
        super().__init__(message)
        self.report = report


def convert_to_fp16(model: str | Path, output: str | Path,
                    check_frames: list[np.ndarray] | None = None,
                    keep_failed: bool = False) -> Fp16Report:
    """Write a float16 copy of `model` at `output` (atomically). With `check_frames` (uint8
    RGB [1, H, W, 3]) its labels are compared with fp32's on them first: below the fp16
    threshold on the pixels away from label boundaries, Fp16ModelFailed and nothing written
    at `output` (`keep_failed`: kept as failed_check_path(output))."""
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel
    except ImportError as exc:
        raise RuntimeError(f"textseg fp16 needs the onnx package ({exc}); pip install onnx"
                           ) from None
    from textseg.engine.onnx_file import describe_model
    from textseg.engine.self_check import (
        SELF_CHECK_KEY,
        check_images,
        interior,
        make_self_check,
    )
    from textseg.engine.tensorrt_rules import require_tensorrt_rules
    from textseg.tools.quantize import (
        failed_check_path,
        refuse_reduced_precision,
        replace_metadata,
    )

    model, output = Path(model), Path(output)
    refuse_reduced_precision(model, "convert")
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
    replace_metadata(half, meta)
    onnx.checker.check_model(half)
    data = half.SerializeToString()
    require_tensorrt_rules(data, name=str(output))
    agreement = inner = None
    inner_total = 0
    if check_frames:
        full = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        reduced = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        same = total = inner_same = 0
        for frame in check_frames:
            a = full.run([LABELS_OUTPUT], {INPUT_NAME: frame})[0]
            b = reduced.run([LABELS_OUTPUT], {INPUT_NAME: frame})[0]
            same += int((a == b).sum())
            total += a.size
            mask = np.stack([interior(labels) for labels in a])
            inner_same += int((a == b)[mask].sum())
            inner_total += int(mask.sum())
        agreement, inner = same / total, inner_same / max(inner_total, 1)
    report = Fp16Report(output, len(data), len(check_frames or []), agreement,
                        time.monotonic() - started, inner, inner_total)
    if not report.passed:
        kept = failed_check_path(output) if keep_failed else None
        if kept is not None:
            atomic_write_bytes(kept, data)
        before = " (the file already there is left as it was)" if output.exists() else ""
        where = (f"Kept as {kept} (--keep-failed); nothing written at {output}{before}."
                 if kept else f"Nothing written at {output}{before} (--keep-failed keeps the "
                 f"file as {failed_check_path(output).name}).")
        raise Fp16ModelFailed(
            f"{output.name} failed its check: {report.describe_agreement()}; every node "
            f"would refuse it at load time. {where} Try: the fp32 model {model.name} (a model "
            "whose class scores are this close together loses its labels in float16)",
            replace(report, path=kept))
    atomic_write_bytes(output, data)
    return report

