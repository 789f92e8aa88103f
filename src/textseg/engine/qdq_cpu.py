"""Q/DQ int8 models on ONNX Runtime's CPU kernels: activations carried as uint8 at load time.

`textseg quantize` writes symmetric int8 activations (zero point 0), the only form TensorRT's
explicit quantization takes. ONNX Runtime's x86 kernels run QLinearConv with uint8 activations
and int8 weights, so its optimiser converts int8 Q/DQ pairs to uint8, but only pairs where the
QuantizeLinear feeds a single DequantizeLinear. A tensor read by two nodes (a block's output
that goes to the next convolution and to the residual Add) keeps int8 and both of its
convolutions run in float between a DequantizeLinear and a QuantizeLinear: 21 of the default
model's 62 convolutions (found with `textseg profile` and ONNX Runtime's optimised graph).

`uint8_activations` makes the same conversion for every activation before ONNX Runtime sees
the model: each activation zero point 0 (int8) becomes 128 (uint8). The two are the same
numbers: clamp(round(x / s), -128, 127) + 128 = clamp(round(x / s) + 128, 0, 255), and
(q - zp) * s is unchanged, so the model computes exactly what the file says. Weights stay int8.
The file on disk is never changed (TensorRT reads it as it is).

Works on the protobuf wire format (``ModelProto.graph`` 7; ``GraphProto.initializer`` 5;
``TensorProto``: dims 1, data_type 2, name 8, raw_data 9), so the vehicle needs no `onnx`.
"""

from __future__ import annotations

from textseg.engine.onnx_file import _field_bytes, _fields, _tensor_dims, _text
from textseg.engine.tensorrt_rules import read_graph

INT8, UINT8 = 3, 2  # onnx.TensorProto.DataType


def _uint8_zero_point(tensor) -> bytes:
    """The TensorProto of an int8 zero point 0, rewritten as uint8 128 (same name and dims)."""
    count = 1
    parts = []
    for number, wire, value in _fields(tensor):
        if number == 1:
            parts.append(_field_bytes(number, wire, value))
        elif number == 8 and wire == 2:
            parts.append(_field_bytes(number, wire, value))
    for dim in _tensor_dims(tensor):
        count *= dim
    parts.append(_field_bytes(2, 0, UINT8))
    parts.append(_field_bytes(9, 2, b"\x80" * count))
    return b"".join(parts)


def activation_zero_points(data: bytes) -> set[str]:
    """Names of the activation zero points to convert, or an empty set when the model is not
    a symmetric int8 Q/DQ model this rewrite is sure of (then nothing is changed)."""
    graph = read_graph(data)
    activation: set[str] = set()
    weights: set[str] = set()
    for node in graph.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.inputs) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.inputs[0] in graph.initializers:
            weights.add(node.inputs[2])
        else:
            activation.add(node.inputs[2])
    if not activation or activation & weights:
        return set()
    for name in activation:
        entry = graph.initializers.get(name)
        if entry is None or entry[0] != "int8" or any(entry[1]):
            return set()  # a zero point from a node, another type, or not 0: leave it alone
    return activation


def uint8_activations(data: bytes) -> tuple[bytes, int]:
    """(model bytes with uint8 activations, number of zero points converted); the input bytes
    unchanged and 0 when the model has no symmetric int8 activations."""
    if b"QuantizeLinear" not in data:  # a float model: no need to parse it
        return data, 0
    names = activation_zero_points(data)
    if not names:
        return data, 0
    converted = 0
    model_parts = []
    for number, wire, value in _fields(memoryview(data)):
        if not (number == 7 and wire == 2):
            model_parts.append(_field_bytes(number, wire, value))
            continue
        graph_parts = []
        for g_number, g_wire, g_value in _fields(value):
            if g_number == 5 and g_wire == 2 and _tensor_name(g_value) in names:
                g_value = _uint8_zero_point(g_value)
                converted += 1
            graph_parts.append(_field_bytes(g_number, g_wire, g_value))
        model_parts.append(_field_bytes(7, 2, b"".join(graph_parts)))
    return b"".join(model_parts), converted


def _tensor_name(tensor) -> str:
    for number, wire, value in _fields(tensor):
        if number == 8 and wire == 2:
            return _text(value)
    return ""
