"""The TensorRT ONNX parser's rules, checked on a model file before any engine is built.

No machine of this project can run TensorRT, so what its parser accepts is encoded here from
its documentation and checked on every export (training), before every `textseg bake`, and in
the tests on every model variant. The graph is the parsed model of `onnx_file`, so the check
needs neither `onnx` nor TensorRT. Sources:

  [ops]     onnx-tensorrt docs/operators.md ("Supported ONNX Operators"): TensorRT 10.x parses
            opsets 9..20; the operator table and its per-operator type restrictions (ArgMax,
            Resize, Softmax: FP32/FP16; Q/DQ: INT8 with zero point 0; Resize modes).
  [uint8]   onnx-tensorrt ModelImporter: "TensorRT does not support UINT8 types for
            intermediate tensors" (also NVIDIA/TensorRT#2809, an HWC uint8 image input):
            uint8 only at graph inputs and outputs, and a uint8 input may only be Cast.
  [cast]    NvInferRuntimeBase.h (DataType::kUINT8): conversion to and from uint8 is
            documented from / to kFLOAT and kHALF only; a uint8 output must be Cast from a
            float or half tensor (not from ArgMax's int64).
  [qdq]     TensorRT developer guide, explicit quantization: symmetric INT8 Q/DQ only (zero
            point 0, int8); TensorRT 11 builds strongly typed networks, so precision must come
            from the ONNX (fp16 tensors or Q/DQ), not from builder flags.
  [static]  the network runs at one fixed size: the image is resized to the metadata's
            network_input_size by a Resize whose `sizes` are constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textseg.engine.contract import INPUT_NAME, ContractError
from textseg.engine.onnx_file import (
    QDQ_OPS,
    GraphNode,
    OnnxModel,
    dtype_name,
    quantization_target,
    read_onnx_model,
)

OPSET_RANGE = (9, 20)  # [ops] TensorRT 10.x
# [ops]: operators the parser supports, with the element types its table lists for them when
# it restricts them (None: any TensorRT type).
FLOAT_ONLY = frozenset({"float32", "float16"})
SUPPORTED_OPS: dict[str, frozenset[str] | None] = {
    **{op: None for op in (
        "Abs", "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip",
        "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "DepthToSpace",
        "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor",
        "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
        "LayerNormalization",
        "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu",
        "Less", "LessOrEqual", "Log", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mul", "Neg",
        "Not", "Or", "Pad", "Pow", "PRelu", "Range", "Reciprocal", "ReduceL2", "ReduceMax",
        "ReduceMean",
        "ReduceMin", "ReduceSum", "Relu", "Reshape", "Round", "Shape", "Sigmoid", "Sign",
        "Slice", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "Transpose",
        "Unsqueeze", "Where")},
    "ArgMax": FLOAT_ONLY,
    "Resize": FLOAT_ONLY,
    "Softmax": FLOAT_ONLY,
    "InstanceNormalization": FLOAT_ONLY,  # GroupNorm exports as Reshape + this (smp's FPN)
    "QuantizeLinear": FLOAT_ONLY,
    "DequantizeLinear": frozenset({"int8"}),
}
RESIZE_MODES = {b"nearest", b"linear"}
RESIZE_COORDINATES = {b"half_pixel", b"pytorch_half_pixel", b"tf_half_pixel_for_nn",
                      b"asymmetric", b"align_corners"}
TENSORRT_TYPES = {"float32", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool"}
# Ops whose output type is fixed whatever their inputs' (for the light type inference).
FIXED_OUTPUT_TYPES = {"ArgMax": "int64", "ArgMin": "int64", "Shape": "int64",
                      "Size": "int64", "Equal": "bool", "Greater": "bool", "Less": "bool",
                      "GreaterOrEqual": "bool", "LessOrEqual": "bool", "Not": "bool",
                      "And": "bool", "Or": "bool", "DequantizeLinear": "float32",
                      "NonZero": "int64"}


def infer_types(model: OnnxModel) -> dict[str, str]:
    """Element type of every tensor, by a small forward pass over the op semantics that
    matter here (Cast's `to`, fixed-type ops; otherwise the first typed input's type)."""
    types = {i.name: i.dtype for i in model.interface_inputs}
    types.update({name: tensor.dtype for name, tensor in model.initializers.items()})
    for node in model.nodes:
        if node.op_type == "Cast":
            to = node.ints.get("to")
            out = dtype_name(to) if to is not None else "type<None>"
        elif node.op_type == "Constant":
            out = node.tensor_type or "?"
        elif node.op_type == "ConstantOfShape":
            out = node.tensor_type or "float32"
        elif node.op_type == "QuantizeLinear":
            # The zero point's type; without one, ONNX quantizes to uint8.
            zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
            out = types.get(zero, "?") if zero else "uint8"
        elif node.op_type in FIXED_OUTPUT_TYPES:
            out = FIXED_OUTPUT_TYPES[node.op_type]
        elif node.op_type == "Where" and len(node.inputs) > 1:
            out = types.get(node.inputs[1], "?")
        else:
            out = next((types[i] for i in node.inputs if i and i in types), "?")
        for name in node.outputs:
            if name:
                types[name] = out
    return types


@dataclass(frozen=True)
class RuleViolation:
    rule: str  # ops | uint8 | cast | qdq | static | opset
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


def check_tensorrt_rules(source: str | Path | bytes | OnnxModel) -> list[RuleViolation]:
    """Every way the model breaks the parser's documented rules (empty list: none found)."""
    model = source if isinstance(source, OnnxModel) else read_onnx_model(source)
    types = infer_types(model)
    inputs = {i.name: i.dtype for i in model.interface_inputs}
    outputs = {o.name: o.dtype for o in model.outputs}
    problems: list[RuleViolation] = []

    def bad(rule: str, node: GraphNode | str, message: str) -> None:
        label = node if isinstance(node, str) else f"{node.op_type} '{node.name or '?'}'"
        problems.append(RuleViolation(rule, label, message))

    target = quantization_target(model.metadata)
    if target not in ("", "tensorrt"):
        # Said first and plainly: the hundreds of Q/DQ violations below follow from it.
        bad("qdq", "model", f"quantized for {target} only (textseg quantize --target cpu: "
            "uint8 activations with zero points); quantize the fp32 model with --target "
            "tensorrt for TensorRT")
    low, high = OPSET_RANGE
    if not low <= model.opset <= high:
        bad("opset", "model", f"opset {model.opset} is outside TensorRT 10's {low}..{high}")
    consumers: dict[str, list[GraphNode]] = {}
    producers: dict[str, GraphNode] = {}
    for node in model.nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
        for name in node.outputs:
            producers[name] = node
    for node in model.nodes:
        if node.domain not in ("", "ai.onnx"):
            bad("ops", node, f"custom domain '{node.domain}' needs a TensorRT plugin")
            continue
        if node.op_type not in SUPPORTED_OPS:
            bad("ops", node, "not an operator the TensorRT ONNX parser supports")
            continue
        allowed = SUPPORTED_OPS[node.op_type]
        first = types.get(node.inputs[0], "?") if node.inputs else "?"
        if allowed is not None and first not in allowed:
            bad("ops", node, f"input type {first}; the parser takes {sorted(allowed)}")
        for name in node.outputs:
            dtype = types.get(name, "?")
            if dtype not in TENSORRT_TYPES and dtype != "?":
                bad("ops", node, f"output '{name}' has type {dtype}, not a TensorRT type")
        if node.op_type == "Resize":
            mode = node.strings.get("mode", b"nearest")
            coords = node.strings.get("coordinate_transformation_mode", b"half_pixel")
            if mode not in RESIZE_MODES or coords not in RESIZE_COORDINATES:
                bad("ops", node, f"Resize mode {mode!r} / coordinates {coords!r} unsupported")
        if node.op_type in QDQ_OPS:
            _check_zero_point(node, model, producers, bad)

    # [uint8]: uint8 only at the interface; the image is only ever Cast, to a non-uint8 type.
    for name, dtype in inputs.items():
        if dtype != "uint8":
            continue
        for node in consumers.get(name, []):
            if node.op_type != "Cast" or types.get(node.outputs[0]) == "uint8":
                bad("uint8", node, f"reads the uint8 input '{name}' directly: cast it to "
                    "float first (TensorRT has no uint8 intermediate tensors)")
    for name, dtype in types.items():
        if dtype == "uint8" and name not in inputs and name not in outputs \
                and name not in model.initializers:
            producer = producers.get(name)
            bad("uint8", producer or name, f"intermediate tensor '{name}' is uint8")
    # [cast]: every uint8 output is a Cast from float or half.
    for name, dtype in outputs.items():
        if dtype != "uint8":
            continue
        producer = producers.get(name)
        if producer is None or producer.op_type != "Cast":
            bad("cast", producer or name, f"uint8 output '{name}' must come from a Cast")
            continue
        source = types.get(producer.inputs[0], "?")
        if source not in FLOAT_ONLY:
            bad("cast", producer, f"uint8 output '{name}' is cast from {source}: TensorRT "
                "converts to uint8 from float or half only")
    _check_static_size(model, consumers, producers, bad)
    return problems


def _check_zero_point(node: GraphNode, model: OnnxModel, producers, bad) -> None:
    if len(node.inputs) < 3 or not node.inputs[2]:
        if node.op_type == "QuantizeLinear":
            bad("qdq", node, "no zero point: ONNX then quantizes to uint8; TensorRT takes "
                "symmetric int8 Q/DQ only (give an int8 zero point of 0)")
        return
    name = node.inputs[2]
    if name in model.initializers:
        dtype, raw = model.initializers[name].dtype, model.initializers[name].raw
    else:
        producer = producers.get(name)
        bad("qdq", node, f"zero point '{name}' must be a constant initializer"
            + (f" (it comes from {producer.op_type})" if producer else ""))
        return
    if dtype != "int8":
        bad("qdq", node, f"zero point type {dtype}: TensorRT takes symmetric int8 Q/DQ only")
    elif any(raw):
        bad("qdq", node, "zero point is not 0: TensorRT takes symmetric int8 Q/DQ only")


def _check_static_size(model: OnnxModel, consumers, producers, bad) -> None:
    """[static]: after the image's Cast (and a layout Transpose), a Resize with constant
    `sizes` brings every frame to the network size."""
    frontier = [n for n in consumers.get(INPUT_NAME, [])]
    seen = 0
    while frontier and seen < 64:  # the Resize sits a few ops after the image
        node = frontier.pop(0)
        seen += 1
        if node.op_type == "Resize":
            sizes = node.inputs[3] if len(node.inputs) > 3 else ""
            if not _constant_spatial_sizes(sizes, model, producers):
                bad("static", node, "the network-size Resize must have constant spatial "
                    "'sizes' (a static network input size)")
            return
        for name in node.outputs:
            frontier.extend(consumers.get(name, []))
    bad("static", INPUT_NAME, "no Resize to a fixed network size follows the image input")


def _constant_spatial_sizes(name: str, model: OnnxModel, producers) -> bool:
    """`sizes` is a constant, or [batch, channels] of the input joined with a constant
    [height, width] (what torch exports for a fixed output size with a dynamic batch)."""
    def constant(tensor: str) -> bool:
        source = producers.get(tensor)
        return tensor in model.initializers or (source is not None
                                                and source.op_type == "Constant")

    if not name:
        return False
    if constant(name):
        return True
    source = producers.get(name)
    return (source is not None and source.op_type == "Concat" and bool(source.inputs)
            and constant(source.inputs[-1]))


def require_tensorrt_rules(source: str | Path | bytes | OnnxModel, name: str = "") -> None:
    """Raise ContractError listing every violation (bake and export call this)."""
    if not name and isinstance(source, OnnxModel):
        name = str(source.path) if source.path is not None else ""
    elif not name and not isinstance(source, bytes):
        name = str(source)
    refuse_violations(check_tensorrt_rules(source), name or "the model")


def refuse_violations(problems: list[RuleViolation], name: str) -> None:
    """Raise ContractError listing `problems` of the model `name`, if there are any."""
    if problems:
        listed = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ContractError(f"{name} breaks TensorRT's ONNX parser rules "
                            f"({len(problems)} problems):\n  {listed}{more}")
