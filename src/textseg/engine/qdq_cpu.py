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

The conversion is a set of edits of the parsed model (`textseg.engine.onnx_file`), so the
backend applies it together with graph_prune's in one rewrite; the vehicle needs no `onnx`.
"""

from __future__ import annotations

import math

from textseg.engine.onnx_file import (
    QDQ_OPS,
    DataType,
    GraphProto,
    OnnxModel,
    read_onnx_model,
    retyped_tensor,
)

UINT8_ZERO_POINT = b"\x80"  # 128: int8 0 carried as uint8


def activation_zero_points(model: OnnxModel) -> set[str]:
    """Names of the activation zero points to convert, or an empty set when the model is not
    a symmetric int8 Q/DQ model this rewrite is sure of (then nothing is changed)."""
    activation: set[str] = set()
    weights: set[str] = set()
    for node in model.nodes:
        if node.op_type not in QDQ_OPS or len(node.inputs) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.inputs[0] in model.initializers:
            weights.add(node.inputs[2])
        else:
            activation.add(node.inputs[2])
    if not activation or activation & weights:
        return set()
    for name in activation:
        tensor = model.initializers.get(name)
        if tensor is None or tensor.dtype != "int8" or any(tensor.raw):
            return set()  # a zero point from a node, another type, or not 0: leave it alone
    return activation


def uint8_zero_point_edits(model: OnnxModel) -> dict[int, bytes]:
    """Edits for `OnnxModel.edited` that carry every activation as uint8 (each int8 zero point
    0 becomes uint8 128, same name and dims); none when the model has no symmetric int8
    activations."""
    names = activation_zero_points(model)
    edits = {}
    for index, tensor in model.graph_entries(GraphProto.INITIALIZER):
        if tensor.name in names:
            _, _, encoded = model.graph_fields[index]
            edits[index] = retyped_tensor(encoded, DataType.UINT8,
                                          UINT8_ZERO_POINT * math.prod(tensor.dims))
    return edits


def uint8_activations(data: bytes) -> tuple[bytes, int]:
    """(model bytes with uint8 activations, number of zero points converted); the input bytes
    unchanged and 0 when the model has no symmetric int8 activations."""
    if b"QuantizeLinear" not in data:  # a float model: no need to parse it
        return data, 0
    model = read_onnx_model(data)
    edits = uint8_zero_point_edits(model)
    if not edits:
        return data, 0
    return model.edited(edits), len(edits)
