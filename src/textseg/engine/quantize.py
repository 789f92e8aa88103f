"""`textseg quantize`: a static int8 Q/DQ model for ONNX Runtime (CPU, VNNI) and TensorRT.

ONNX Runtime's quantization tools insert QuantizeLinear/DequantizeLinear pairs around the
chosen operators (Conv by default), with per-channel weight scales and activation ranges
calibrated on frames from a camera folder. Both activations and weights are signed int8 with
zero point 0 (symmetric): the only Q/DQ form TensorRT's explicit quantization accepts, so the
same file runs on ONNX Runtime here and is baked by TensorRT 10/11 without a calibrator. The
image input, the network-size resize and the label outputs stay as they are, so the artifact
keeps the contract; its metadata is carried over, plus what was quantized and how.

Needs the `onnx` package (ONNX Runtime's quantization tools import it); the vehicle runtime
does not.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from textseg.engine.calibration import IMAGE_SUFFIXES
from textseg.engine.contract import INPUT_NAME
from textseg.fileio import atomic_write_bytes

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_OPS = ("Conv",)


@dataclass(frozen=True)
class QuantizeReport:
    path: Path
    size_bytes: int
    method: str
    frames: int
    ops: tuple[str, ...]
    quantized_nodes: int
    seconds: float


def calibration_frames(folder: str | Path, limit: int) -> list[np.ndarray]:
    """uint8 RGB frames [1, H, W, 3] from a camera folder, evenly spread over its files.

    An unreadable file is an error naming it: a silently shorter calibration set is not."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if limit < 1:
        raise ValueError(f"--frames must be >= 1, got {limit}")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).astype(int)]
    frames = []
    for path in picks:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read calibration image {path}")
        frames.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))[None])
    return frames


def quantize_model(model: str | Path, output: str | Path, calibration: str | Path,
                   method: str = "minmax", frames: int = 32,
                   ops: tuple[str, ...] = DEFAULT_OPS,
                   exclude: tuple[str, ...] = ()) -> QuantizeReport:
    """Write a static int8 Q/DQ copy of `model` to `output` (atomically). `exclude`: node
    names kept in float (layers whose quantization costs the most accuracy)."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise RuntimeError(f"textseg quantize needs the onnx package ({exc}); "
                           "pip install onnx") from None
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: choose from {CALIBRATION_METHODS}")
    from textseg.engine.onnx_file import describe_model

    model, output = Path(model), Path(output)
    source = describe_model(model)  # a contract model, or a clear error
    images = calibration_frames(calibration, frames)
    started = time.monotonic()

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(images)

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {INPUT_NAME: item}

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="textseg_quantize_") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quantized = Path(scratch) / "quantized.onnx"
        # Shape inference first, as ONNX Runtime recommends for QDQ; its graph optimiser is
        # skipped because it merges the labels' ArgMax -> float -> uint8 casts into one
        # int64 -> uint8 Cast, which TensorRT does not take (tensorrt_rules [cast]).
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True,
                          skip_optimization=True)
        names = {node.name for node in onnx.load(str(prepared)).graph.node}
        unknown = [name for name in exclude if name not in names]
        if unknown:
            raise ValueError(f"--keep-float: no node named {unknown} in {model.name} (node "
                             "names as `onnx` or Netron show them)")
        quantize_static(
            str(prepared), str(quantized), Frames(), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops), per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=calibrate, nodes_to_exclude=list(exclude),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                           "CalibTensorRangeSymmetric": True,
                           # Conv biases stay float: TensorRT has no int32 DequantizeLinear.
                           "QuantizeBias": False})
        proto = onnx.load(str(quantized))
    nodes = sum(1 for n in proto.graph.node if n.op_type == "QuantizeLinear")
    meta = {p.key: p.value for p in proto.metadata_props}
    # The contract's metadata, carried over; the fp32 evaluation no longer describes this
    # file, so it is kept only under its own name.
    extra = dict(source.info.extra)
    if "evaluation" in extra:
        meta["source_evaluation"] = extra.pop("evaluation")
    meta.update(replace(source.info, eval_miou=None, extra=extra).to_metadata())
    meta["quantization"] = json.dumps({
        "format": "QDQ", "activations": "int8 symmetric", "weights": "int8 per-channel "
        "symmetric", "ops": list(ops), "kept_float": list(exclude), "calibration": method,
        "calibration_frames": len(images),
        "calibration_folder": Path(calibration).name, "source_sha256": source.sha256,
        "tool": "onnxruntime.quantization.quantize_static"})
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    from textseg.engine.tensorrt_rules import require_tensorrt_rules

    require_tensorrt_rules(data, name=str(output))
    atomic_write_bytes(output, data)
    return QuantizeReport(output, len(data), method, len(images), tuple(ops), nodes,
                          time.monotonic() - started)
