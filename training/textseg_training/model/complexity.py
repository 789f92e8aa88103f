"""Model complexity: parameter counts and multiply-accumulates (MACs).

MACs count what dominates a CNN's cost and what the STDC-Seg paper reports: convolutions
(``out_elements * in_channels / groups * kH * kW``) and linear layers
(``out_elements * in_features``), plus the TGM's cosine similarity (``K * text_width * h * w``)
or the bridge's attention products and cosine (``TextBridge.macs``).
BN, activations, pooling, interpolation and the normalisations are left out. They are counted
with forward hooks on one real forward pass (batch 1), so whatever the graph actually
executes at that input size is what gets counted. Pass a deploy model to count the inference
graph; a training model also counts the auxiliary and detail heads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .text_bridge import TextBridge
from .text_guidance import TextGuidance


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as the text embeddings are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv_macs(module: nn.Conv2d, output: Tensor) -> int:
    k_h, k_w = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * k_h * k_w


def _linear_macs(module: nn.Linear, output: Tensor) -> int:
    return output.numel() * module.in_features


def _tgm_macs(module: TextGuidance | TextBridge, outputs: tuple[Tensor, Tensor]) -> int:
    score = outputs[1]
    return score.shape[0] * module.macs(score.shape[2], score.shape[3])


def count_gmacs(model: nn.Module, input_size: tuple[int, int] = (512, 1024)) -> float:
    """GMACs (1e9 multiply-accumulates) of one forward pass on a [1, 3, H, W] input."""
    total = 0
    handles = []

    def hook(counter):
        def add(module: nn.Module, _inputs: tuple, output) -> None:
            nonlocal total
            total += counter(module, output)

        return add

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(hook(_conv_macs)))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(hook(_linear_macs)))
        elif isinstance(module, (TextGuidance, TextBridge)):
            handles.append(module.register_forward_hook(hook(_tgm_macs)))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total / 1e9


@dataclass(frozen=True)
class ComplexityRow:
    """One line of a complexity table."""

    model: str
    input_size: tuple[int, int]
    params: int
    gmacs: float


def measure(name: str, model: nn.Module, input_size: tuple[int, int]) -> ComplexityRow:
    """Parameters and GMACs of ``model`` at ``input_size`` as a table row."""
    return ComplexityRow(name, tuple(input_size), count_parameters(model),
                         count_gmacs(model, input_size))


def complexity_table(rows: Iterable[ComplexityRow]) -> str:
    """A markdown table: model | input (HxW) | params | GMACs."""
    lines = [
        "| model | input (HxW) | params | GMACs |",
        "|---|---|---:|---:|",
    ]
    for row in rows:
        h, w = row.input_size
        lines.append(
            f"| {row.model} | {h}x{w} | {row.params / 1e6:.3f}M ({row.params:,}) "
            f"| {row.gmacs:.2f} |"
        )
    return "\n".join(lines)
