"""Can a Q/DQ int8 model overflow ONNX Runtime's int8 sums on an x86 CPU without VNNI?

ONNX Runtime runs a quantized convolution on x86 as uint8 activations times int8 weights. With
VNNI (`vpdpbusd`) the products are summed in int32, exactly. Without it (AVX2; AVX-512 before
VNNI) its kernels use `vpmaddubsw`, which multiplies neighbouring uint8 / int8 pairs and adds
each pair into a *saturating* int16: a[k]·w[k] + a[k+1]·w[k+1] is clamped to [-32768, 32767].
An activation byte can be anything in [0, 255] (the zero point is subtracted afterwards), so a
convolution is safe only when 255 · (|w_i| + |w_j|) <= 32767 for every two weights of one
output channel that may be paired, i.e. the two largest |w| of each channel sum to at most 128.
Per-channel symmetric 8-bit weights put 127 in every channel, so almost every channel can
overflow; 7-bit weights (ONNX Runtime's `reduce_range`, [-64, 64]) never can. The silent result
on such a CPU: CamVid val mIoU 60.38 and 52.03 instead of 62.64 and 62.45 (issue 20).

The check reads the file's own weights (the parsed model of `textseg.engine.onnx_file`, no
`onnx` needed), so it gives the same answer on every machine, VNNI or not: a file that could
saturate anywhere fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.engine.onnx_file import GraphNode, OnnxModel, packed_varints, read_onnx_model

INT16_MAX = 32767
UINT8_MAX = 255
# Node types whose weight input ONNX Runtime multiplies by uint8 activations in int8 kernels.
QUANTIZED_MATMULS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class SaturationRisk:
    """One quantized node whose weights can overflow a saturating int16 pair sum."""

    node: str
    op_type: str
    channels: int  # output channels that can overflow
    total_channels: int
    worst_pair_sum: int  # 255 * (the two largest |w| of the worst channel)

    def __str__(self) -> str:
        return (f"{self.node or self.op_type}: {self.channels}/{self.total_channels} channels, "
                f"worst pair 255 x {self.worst_pair_sum // UINT8_MAX} = {self.worst_pair_sum} "
                f"> {INT16_MAX}")


@dataclass(frozen=True)
class SaturationReport:
    quantized_nodes: int  # nodes with int8 weights and quantized activations
    risks: tuple[SaturationRisk, ...]
    max_abs_weight: int

    @property
    def could_saturate(self) -> bool:
        return bool(self.risks)

    def summary(self) -> str:
        if not self.quantized_nodes:
            return "no int8 weights"
        if not self.risks:
            return (f"{self.quantized_nodes} int8 nodes, weights within +-{self.max_abs_weight}: "
                    "no int16 pair sum can overflow (safe without VNNI)")
        return (f"{len(self.risks)} of {self.quantized_nodes} int8 nodes can overflow int16 "
                f"pair sums without VNNI (weights up to +-{self.max_abs_weight}; first: "
                f"{self.risks[0]})")


def _int8_values(model: OnnxModel, name: str) -> np.ndarray | None:
    tensor = model.initializers.get(name)
    if tensor is None or tensor.dtype != "int8":
        return None
    dims = tensor.dims
    count = int(np.prod(dims)) if dims else 1
    raw = tensor.raw
    if len(raw) == count:
        values = np.frombuffer(raw, dtype=np.int8)
    else:  # stored as packed int32_data varints (small tensors)
        # int32_data holds each value as a varint; negatives as 64-bit two's complement.
        values = np.array(packed_varints(raw), dtype=np.uint64).astype(np.int8)
        if values.size != count:
            return None
    return values.reshape(dims) if dims else values


def _reduction_rows(node: GraphNode, weights: np.ndarray) -> np.ndarray:
    """The weights as [output channel, reduction] for the node's kind."""
    if node.op_type == "Conv":
        return weights.reshape(weights.shape[0], -1)
    if node.op_type == "ConvTranspose":  # [C_in, C_out / group, kh, kw]
        return np.moveaxis(weights, 1, 0).reshape(weights.shape[1], -1)
    if node.op_type == "Gemm" and node.ints.get("transB", 0):
        return weights.reshape(weights.shape[0], -1)
    return weights.reshape(weights.shape[0], -1).T  # MatMul / Gemm: [K, N]


def saturation_report(source: str | Path | bytes | OnnxModel) -> SaturationReport:
    """Every node of `source` whose int8 weights meet quantized (DequantizeLinear) activations,
    and those whose weights could overflow a saturating int16 pair sum."""
    model = source if isinstance(source, OnnxModel) else read_onnx_model(source)
    producers = {out: node for node in model.nodes for out in node.outputs}
    risks: list[SaturationRisk] = []
    quantized = max_abs = 0
    for node in model.nodes:
        if node.op_type not in QUANTIZED_MATMULS or len(node.inputs) < 2:
            continue
        activation, weight = (producers.get(name) for name in node.inputs[:2])
        if not (activation and weight and activation.op_type == "DequantizeLinear"
                and weight.op_type == "DequantizeLinear"):
            continue
        values = _int8_values(model, weight.inputs[0])
        if values is None or values.ndim < 1:
            continue
        quantized += 1
        rows = np.abs(_reduction_rows(node, values).astype(np.int32))
        max_abs = max(max_abs, int(rows.max(initial=0)))
        if rows.shape[1] < 2:
            top_two = rows[:, 0]
        else:
            top_two = np.sort(rows, axis=1)[:, -2:].sum(axis=1)
        pair_sums = UINT8_MAX * top_two
        over = int((pair_sums > INT16_MAX).sum())
        if over:
            risks.append(SaturationRisk(node.name, node.op_type, over, len(pair_sums),
                                        int(pair_sums.max())))
    return SaturationReport(quantized, tuple(risks), max_abs)
