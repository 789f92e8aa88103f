"""`textseg quantize`: a static int8 Q/DQ model for TensorRT and ONNX Runtime, or for the CPU only.

ONNX Runtime's quantization tools insert QuantizeLinear/DequantizeLinear pairs around the
chosen operators (Conv by default), with per-channel weight scales and activation ranges
calibrated on frames from a camera folder. Two targets:

- `tensorrt` (default): activations and weights signed int8 with zero point 0 (symmetric), the
  only Q/DQ form TensorRT's explicit quantization accepts, so the same file is baked by
  TensorRT 10/11 without a calibrator and also runs on ONNX Runtime's CPU kernels.
- `cpu`: activations uint8 with a zero point (asymmetric), int32 biases. A ReLU6 (Clip 0..6)
  or ReLU in front of a QuantizeLinear then has nothing left to do, since the Q's own
  saturation to [0, 255] covers a calibrated range of [0, <= 6], so ONNX Runtime's quantizer
  drops it and every convolution with its activation becomes one QLinearConv. The
  Clip -> Q -> DQ chains that the symmetric form keeps (its range holds negatives) were a
  third of its CPU time. TensorRT refuses this form (uint8, non-zero zero points).

The image input, the network-size resize and the label outputs stay as they are, so the
artifact keeps the contract; its metadata is carried over, plus what was quantized and how.

Every file is checked before it is written: ONNX Runtime runs it on its self-check frames
here, against the fp32 labels stored with them. A file that fails is not written under the
requested name (QuantizedModelFailed says how int8 lost against fp32 and what to try;
`keep_failed` keeps it as NAME.failed-self-check.onnx), and what the check found here is
recorded in the file, so a failure elsewhere can tell the machine from the quantization.

Needs the `onnx` package (ONNX Runtime's quantization tools import it); the vehicle runtime
does not.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from textseg.engine.calibration import IMAGE_SUFFIXES
from textseg.engine.contract import INPUT_NAME
from textseg.engine.onnx_file import CPU_ONLY_TARGET
from textseg.engine.self_check import (
    SELF_CHECK_KEY,
    WHERE_MADE_KEY,
    SelfCheckFailed,
    SelfCheckResult,
    check_images,
    check_policy,
    make_self_check,
)
from textseg.fileio import atomic_write_bytes

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("tensorrt", "cpu")
# 7: weights in [-64, 64], so no pair of uint8 x int8 products can overflow the int16 sums of
# x86 CPUs without VNNI (textseg.engine.int8_saturation); 8: the full int8 range, exact only on
# VNNI CPUs, ARM and TensorRT.
WEIGHT_BITS = (7, 8)
DEFAULT_OPS = ("Conv",)
# With asymmetric activations ONNX Runtime's quantizer removes these when they feed a
# quantized tensor (its QDQRemovableActivation); listed so that it considers them.
CPU_REMOVABLE_ACTIVATIONS = ("Clip", "Relu")
FAILED_SUFFIX = ".failed-self-check.onnx"  # what --keep-failed calls a file that failed
WORST_CLASSES = 3  # named in a failure


@dataclass(frozen=True)
class QuantizeReport:
    path: Path
    size_bytes: int
    method: str
    frames: int
    ops: tuple[str, ...]
    quantized_nodes: int
    seconds: float
    target: str = "tensorrt"
    self_check: SelfCheckResult | None = None  # the file's own check here (None: not run)


class QuantizedModelFailed(SelfCheckFailed):
    """The int8 file failed its own self-check where it was made, so it was not written
    under the requested name. `report.path`: where it was kept (`keep_failed`), else None."""

    def __init__(self, message: str, report: QuantizeReport) -> None:
        super().__init__(message)
        self.report = report


def failed_check_path(output: str | Path) -> Path:
    """Where `keep_failed` keeps a file that failed its own self-check:
    OUT.failed-self-check.onnx."""
    output = Path(output)
    stem = output.name[:-len(".onnx")] if output.name.endswith(".onnx") else output.name
    return output.with_name(stem + FAILED_SUFFIX)


def calibration_frames(folder: str | Path, limit: int, option: str = "--calibration"
                       ) -> list[np.ndarray]:
    """uint8 RGB frames [1, H, W, 3] from a camera folder, evenly spread over its files.
    `option`: the command-line option that names the folder, for the error when it is absent.

    An unreadable file is an error naming it: a silently shorter calibration set is not."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (give one with {option} "
                                "FOLDER)")
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


def refuse_reduced_precision(model: str | Path, making: str) -> None:
    """A ValueError naming `model` when it is already int8 (Q/DQ) or fp16: `making` (e.g.
    "quantize") starts from the fp32 file."""
    from textseg.engine.onnx_file import model_precision

    precision = model_precision(model)
    if precision == "int8":
        raise ValueError(f"{model} is already quantized (int8 Q/DQ): {making} the fp32 file")
    if precision == "fp16":
        raise ValueError(f"{model} is an fp16 file (float16 weights): {making} the fp32 file")


def format_bytes(size: int) -> str:
    """A file size as messages write it: KB below 1 MB, else MB with one decimal."""
    return f"{size / 1e3:.0f} KB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def replace_metadata(proto, meta: dict[str, str]) -> None:
    """Make `meta` the ONNX model's whole metadata (what a written copy of a model carries)."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)


def quantize_model(model: str | Path, output: str | Path, calibration: str | Path,
                   method: str = "minmax", frames: int = 32,
                   ops: tuple[str, ...] = DEFAULT_OPS,
                   exclude: tuple[str, ...] = (), target: str = "tensorrt",
                   weight_bits: int = 7, self_check: str = "refuse",
                   keep_failed: bool = False) -> QuantizeReport:
    """Write a static int8 Q/DQ copy of `model` to `output` (atomically). `exclude`: node
    names kept in float (layers whose quantization costs the most accuracy); `target`:
    `tensorrt` (symmetric int8, also runs on the CPU) or `cpu` (asymmetric uint8, faster
    on ONNX Runtime's CPU kernels, refused by TensorRT).

    `self_check`: `refuse` (default) raises QuantizedModelFailed, writing nothing at
    `output`, when the file fails its own self-check on this machine (`keep_failed`: kept as
    failed_check_path(output)); `warn` writes it anyway (the result in the report); `off`
    does not run the check."""
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
    if target not in TARGETS:
        raise ValueError(f"quantization target {target!r}: choose from {TARGETS}")
    if weight_bits not in WEIGHT_BITS:
        raise ValueError(f"weight bits {weight_bits!r}: choose from {WEIGHT_BITS}")
    check_policy(self_check)
    from textseg.engine.onnx_file import describe_model

    model, output = Path(model), Path(output)
    refuse_reduced_precision(model, "quantize")
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
        # Shape inference first, as ONNX Runtime recommends for QDQ. Its graph optimiser is
        # skipped for TensorRT because it merges the labels' ArgMax -> float -> uint8 casts
        # into one int64 -> uint8 Cast, which TensorRT does not take (tensorrt_rules [cast]).
        # The CPU form needs it: it folds the constant text-side Clip, whose near-constant
        # range the histogram calibrators cannot bin.
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True,
                          skip_optimization=target == "tensorrt")
        graph = onnx.load(str(prepared)).graph
        names = {node.name for node in graph.node}
        unknown = [name for name in exclude if name not in names]
        if unknown:
            raise ValueError(f"--keep-float: no node named {unknown} in {model.name} (node "
                             "names as `onnx` or Netron show them)")
        auto_excluded: tuple[str, ...] = ()
        if target == "tensorrt":
            activations, options = QuantType.QInt8, {
                "ActivationSymmetric": True, "WeightSymmetric": True,
                "CalibTensorRangeSymmetric": True,
                # Conv biases stay float: TensorRT has no int32 DequantizeLinear.
                "QuantizeBias": False}
            op_types = list(ops)
        else:
            activations, options = QuantType.QUInt8, {
                "ActivationSymmetric": False, "WeightSymmetric": True,
                "QDQKeepRemovableActivations": False}
            op_types = list(ops) + [op for op in CPU_REMOVABLE_ACTIVATIONS if op not in ops]
            # Only the activations of quantized nodes: a Clip elsewhere (the text guidance
            # clamps cosines near 1) has no business being quantized.
            auto_excluded = _unquantized_activations(graph, tuple(ops), exclude)
            exclude = tuple(exclude) + auto_excluded
        candidates = [name for name in output_layers(graph, tuple(ops)) if name not in exclude]
        chatter = io.StringIO()  # the histogram calibrators print their progress on stdout
        with contextlib.redirect_stdout(chatter):
            quantize_static(
                str(prepared), str(quantized), Frames(), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types, per_channel=True,
                activation_type=activations, weight_type=QuantType.QInt8,
                calibrate_method=calibrate, nodes_to_exclude=list(exclude),
                reduce_range=weight_bits == 7, extra_options=options)
        proto = onnx.load(str(quantized))
    nodes = sum(1 for n in proto.graph.node if n.op_type == "QuantizeLinear")
    kept_float = [name for name in exclude if name not in auto_excluded]
    meta = {p.key: p.value for p in proto.metadata_props}
    # The contract's metadata, carried over; the fp32 evaluation no longer describes this
    # file, so it is kept only under its own name (the quantizer copied it into `meta` too).
    extra = dict(source.info.extra)
    meta.pop("evaluation", None)
    if "evaluation" in extra:
        meta["source_evaluation"] = extra.pop("evaluation")
    meta.update(replace(source.info, eval_miou=None, extra=extra).to_metadata())
    removed = sum(1 for n in _op_types(model) if n in CPU_REMOVABLE_ACTIVATIONS) - sum(
        1 for n in proto.graph.node if n.op_type in CPU_REMOVABLE_ACTIVATIONS)
    if SELF_CHECK_KEY not in meta:
        # The fp32 source's labels on a few calibration frames, shrunk: the reference every
        # backend compares this file's labels with when it opens it.
        meta[SELF_CHECK_KEY] = make_self_check(
            model, check_images(images, source.info.network_input_size)
        ).to_metadata()
    quantization = {
        "format": "QDQ", "target": "tensorrt" if target == "tensorrt" else CPU_ONLY_TARGET,
        "activations": "int8 symmetric" if target == "tensorrt" else "uint8 asymmetric",
        "weights": "int8 per-channel symmetric" + (
            ", 7-bit range [-64, 64] (no int16 overflow without VNNI)"
            if weight_bits == 7 else ", full 8-bit range (exact only with VNNI, Arm, TensorRT)"),
        "weight_bits": weight_bits,
        "biases": "float" if target == "tensorrt" else "int32",
        "activations_folded_into_quantize": removed,
        "ops": list(ops), "kept_float": kept_float, "calibration": method,
        "calibration_frames": len(images),
        "calibration_folder": Path(calibration).name, "source_sha256": source.sha256,
        "tool": "onnxruntime.quantization.quantize_static"}
    meta["quantization"] = json.dumps(quantization)
    replace_metadata(proto, meta)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if target == "tensorrt":
        from textseg.engine.tensorrt_rules import require_tensorrt_rules

        require_tensorrt_rules(data, name=str(output))
    check = failure = None
    if self_check != "off":
        from textseg.cpu import cpu_features
        from textseg.engine.onnx_file import with_metadata

        check, failure = _own_check(data, model, output.name)
        quantization[WHERE_MADE_KEY] = {
            "passed": check.passed, "agreement": round(check.agreement, 6),
            "threshold": check.threshold, "pixels": check.pixels,
            "cpu": cpu_features().describe(), "backend": check.backend}
        data = with_metadata(data, {"quantization": json.dumps(quantization)})
    if source.has_confidence:
        # The node's health reference, from this file's own outputs on the calibration frames
        # (the int8 model's confidence is not the fp32 one's).
        from textseg.engine.onnx_file import with_metadata
        from textseg.health import HEALTH_KEY, reference_from_model

        reference = reference_from_model(data, [f[0] for f in images],
                                         f"{len(images)} frames of {Path(calibration).name}",
                                         source.info.num_classes)
        data = with_metadata(data, {HEALTH_KEY: reference.to_metadata()})
    report = QuantizeReport(output, len(data), method, len(images), tuple(ops), nodes,
                            time.monotonic() - started, target, check)
    if failure is not None and self_check == "refuse":
        kept = failed_check_path(output) if keep_failed else None
        if kept is not None:
            atomic_write_bytes(kept, data)
        raise QuantizedModelFailed(
            _failure_message(output, kept, failure, method, len(images), Path(calibration),
                             model, weight_bits, candidates),
            replace(report, path=kept, seconds=time.monotonic() - started))
    atomic_write_bytes(output, data)
    return report


@dataclass(frozen=True)
class _Failure:
    """What the check knows when a new int8 file fails it."""
    result: SelfCheckResult  # the int8 file against the stored fp32 labels
    fp32: SelfCheckResult  # the fp32 source against the same labels, on this machine
    classes: list  # self_check.ClassAgreement, the classes that lost most first
    warnings: list[str]  # what the backend reported when it opened the file
    frames: int


def _own_check(data: bytes, model: Path, name: str
               ) -> tuple[SelfCheckResult, _Failure | None]:
    """The new file's stored self-check, run here by ONNX Runtime as every node would; on a
    failure also the fp32 source on the same frames and the classes that lost the most."""
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend
    from textseg.engine.self_check import class_agreement, read_self_check, run_self_check

    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="textseg_quantize_check_") as scratch:
        candidate = Path(scratch) / name
        candidate.write_bytes(data)
        backend = OnnxRuntimeBackend(candidate, self_check="warn", report=warnings.append)
        try:
            result = backend.self_check
            if result is None:
                raise ValueError(f"{candidate.name}: no self-check stored to run")
            if result.passed:
                return result, None
            stored = read_self_check(backend.session.get_modelmeta().custom_metadata_map)
            labels = [backend.infer(frame).labels for frame in stored.frames]
            classes = class_agreement(labels, stored, backend.info.class_names)
        finally:
            backend.close()
    reference = OnnxRuntimeBackend(model, self_check="off")
    try:
        fp32 = run_self_check(lambda frames: [r.labels for r in reference.infer_batch(frames)],
                              stored, "fp32", result.backend)
    finally:
        reference.close()
    # The self-check's own failure line repeats the result; the rest (e.g. saturating int8
    # sums on this CPU) says why.
    warnings = [w.replace(str(candidate), name) for w in warnings
                if "self-check FAILED" not in w]
    return result, _Failure(result, fp32, classes, warnings, len(stored.frames))


def _failure_message(output: Path, kept: Path | None, failure: _Failure, method: str,
                     frames: int, calibration: Path, model: Path, weight_bits: int,
                     candidates: list[str] = ()) -> str:
    """Why the new file was not written, and what to try instead."""
    result, fp32 = failure.result, failure.fp32
    lines = [f"{output.name} failed its own self-check: {100 * result.agreement:.2f} % of "
             f"{result.pixels} pixels of the {failure.frames} check frames agree with the "
             f"fp32 model's labels (needs {100 * result.threshold:.1f} % for int8; "
             f"{result.backend})."]
    if failure.warnings:
        lines.append("On this CPU: " + " ".join(w.removeprefix("WARNING ") for w in
                                                failure.warnings))
    if fp32.passed:
        lines.append(f"The fp32 model computes those labels here ({100 * fp32.agreement:.2f} %), "
                     "so this machine is not the cause: int8 lost accuracy against fp32"
                     + (" because its sums saturate on this CPU." if failure.warnings else
                        " on these frames."))
    else:
        lines.append(f"The fp32 model itself agrees with its stored labels on only "
                     f"{100 * fp32.agreement:.2f} % here: this machine or ONNX Runtime version "
                     f"computes the model differently too (`textseg self-check {model}`).")
    from textseg.engine.self_check import classes_that_lost

    lost, invented = classes_that_lost(failure.classes, WORST_CLASSES)
    if lost:
        lines.append("Classes that lost the most, int8 against fp32: "
                     + "; ".join(c.describe("int8") for c in lost) + ".")
    if invented:
        lines.append("Classes int8 gives where fp32 gives none: "
                     + "; ".join(c.describe("int8") for c in invented) + ".")
    before = " (the file already there is left as it was)" if output.exists() else ""
    lines.append(f"Kept as {kept} (--keep-failed); nothing written at {output}{before}." if kept
                 else f"Nothing written at {output}{before} (--keep-failed keeps the file as "
                 f"{failed_check_path(output).name}).")
    others = " or ".join(f"--method {m}" for m in CALIBRATION_METHODS if m != method)
    layers = (f"; the class-score layer{'s' * (len(candidates) > 1)} feeding the output: "
              f"--keep-float {' '.join(shlex.quote(name) for name in candidates)}"
              if candidates else "")
    tries = [f"another calibration method ({others}; this was {method})",
             f"other or more calibration frames, like the camera's (--calibration DIR, "
             f"--frames N; this was {frames} of {calibration.name})",
             f"the layers that lose the most left in float (--keep-float NODE{layers}; "
             f"`textseg info {shlex.quote(str(model))} --nodes` lists the node names)"]
    if weight_bits == 8 and failure.warnings:
        tries.insert(0, "7-bit weights (--weight-bits 7, the default)")
    tries += [f"fp16 (`{fp16_command(model, calibration)}`)",
              f"or keep the fp32 model {model.name}"]
    lines.append("Try: " + "; ".join(tries) + ".")
    return "\n".join(lines)


def fp16_command(model: Path, images: Path) -> str:
    """`textseg fp16` for `model`, with its agreement check on `images`: runs as printed."""
    return f"textseg fp16 {shlex.quote(str(model))} --images {shlex.quote(str(images))}"


def output_layers(graph, ops: tuple[str, ...]) -> list[str]:
    """Names of the nodes of type `ops` nearest the outputs of `graph` (an onnx GraphProto),
    walking back from each output: the class-score layers, whose int8 error every label
    sees directly."""
    producers = {out: node for node in graph.node for out in node.output}
    found: list[str] = []
    seen: set[str] = set()
    pending = [output.name for output in graph.output]
    while pending:
        name = pending.pop()
        node = producers.get(name)
        if name in seen or node is None:
            continue
        seen.add(name)
        if node.op_type in ops:
            if node.name and node.name not in found:
                found.append(node.name)
            continue
        pending.extend(node.input)
    return found


def _op_types(model: Path) -> list[str]:
    """The operator type of every node of `model`."""
    from textseg.engine.onnx_file import read_onnx_model

    return [node.op_type for node in read_onnx_model(model).nodes]


def _unquantized_activations(graph, ops: tuple[str, ...],
                             kept_float: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the Clip / Relu nodes whose input is not the output of a quantized node."""
    producers = {out: node for node in graph.node for out in node.output}
    names = []
    for node in graph.node:
        if node.op_type not in CPU_REMOVABLE_ACTIVATIONS:
            continue
        source = producers.get(node.input[0])
        if source is None or source.op_type not in ops or source.name in kept_float:
            names.append(node.name)
    return tuple(names)
