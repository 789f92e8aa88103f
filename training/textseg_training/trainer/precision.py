"""Training precision: which autocast a step runs under, and whether a GradScaler is needed.

  fp32  no autocast
  bf16  bfloat16 autocast (CPU or CUDA); bf16 keeps fp32's exponent range, so no loss scaling
  amp   float16 autocast with a GradScaler, CUDA only (the usual mixed precision on GPUs)
  auto  amp on CUDA; bf16 on a CPU with native bf16 instructions (AVX-512 BF16 or AMX), where
        it measured 1.5-2.5x faster per step; fp32 on other CPUs, where bf16 is emulated

Only the network's forward runs under autocast. Its outputs are cast to fp32 before the loss,
so the loss reductions and OHEM's sort run in fp32; parameters, BatchNorm running statistics
and the optimizer state stay fp32 throughout (autocast casts per op, it never changes them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from textseg.cpu import cpu_features, parse_cpuinfo

PRECISIONS = ("auto", "fp32", "bf16", "amp")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when this CPU executes bf16 arithmetic natively: AVX-512 BF16 or AMX on x86, the
    BF16 extension on Arm (`cpuinfo`: the text of /proc/cpuinfo; default this machine's)."""
    features = cpu_features() if cpuinfo is None else parse_cpuinfo(cpuinfo)
    return features.has_native_bf16


@dataclass(frozen=True)
class Precision:
    """The resolved precision of a run on one device."""

    name: str  # fp32 | bf16 | amp (never auto)
    device_type: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "amp": torch.float16}.get(self.name)

    @property
    def uses_grad_scaler(self) -> bool:
        return self.name == "amp"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        dtype = self.autocast_dtype
        if dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=dtype):
            yield


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """Turn the config's `precision` into what runs on `device`; refuse what cannot run."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision '{requested}' is not one of {PRECISIONS}")
    kind = device.type
    if requested == "auto":
        if kind == "cuda":
            requested = "amp"
        elif kind == "cpu" and cpu_has_native_bf16():
            requested = "bf16"
        else:
            requested = "fp32"
    if requested == "amp" and kind != "cuda":
        raise ValueError("precision 'amp' (float16 autocast with loss scaling) needs CUDA; "
                         "on CPU use 'bf16' or 'fp32' (or 'auto')")
    return Precision(requested, kind)
