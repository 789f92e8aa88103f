"""What this CPU is, as far as int8 and bf16 numerics go; recorded beside every figure.

Two machines of one size can differ in what int8 computes: x86 CPUs with VNNI (AVX512-VNNI,
AVX-VNNI, AMX) multiply uint8 by int8 and accumulate in int32, exactly; x86 CPUs without it
(AVX2, AVX-512 before Cascade Lake) run ONNX Runtime's uint8 x int8 kernels with `vpmaddubsw`,
which adds each pair of products into a *saturating* int16 (textseg.engine.int8_saturation).
Arm's kernels widen before they add. bf16 training is native only with AVX512-BF16 / AMX or
Arm's BF16. Read from /proc/cpuinfo (Linux); elsewhere the fields say "unknown".
"""

from __future__ import annotations

import functools
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # x86 /proc/cpuinfo flags
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16",
                  "amx_bf16")

# How ONNX Runtime's CPU kernels accumulate uint8 x int8 products on each kind of CPU.
INT8_EXACT_VNNI = "vnni"
INT8_SATURATING_PAIRS = "int16 pairs (no VNNI)"
INT8_ARM = "arm"


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    arch: str
    flags: frozenset[str]
    arm_features: frozenset[str] = frozenset()

    @property
    def is_x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i686", "i386")

    @property
    def has_vnni(self) -> bool:
        return bool(self.flags & VNNI_FLAGS)

    @property
    def has_native_bf16(self) -> bool:
        return bool(self.flags & NATIVE_BF16_FLAGS) or "bf16" in self.arm_features

    @property
    def int8_accumulation(self) -> str:
        """How uint8 x int8 dot products are summed here (INT8_* above)."""
        if not self.is_x86:
            return INT8_ARM
        return INT8_EXACT_VNNI if self.has_vnni else INT8_SATURATING_PAIRS

    @property
    def int8_saturates(self) -> bool:
        """Whether 8-bit weights can overflow ONNX Runtime's int8 sums on this CPU."""
        return self.int8_accumulation == INT8_SATURATING_PAIRS

    def describe(self) -> str:
        """One line: the model and its int8 / bf16 features."""
        int8 = {INT8_EXACT_VNNI: "VNNI", INT8_SATURATING_PAIRS: "no VNNI",
                INT8_ARM: "Arm int8"}[self.int8_accumulation]
        bf16 = "bf16" if self.has_native_bf16 else "no bf16"
        return f"{self.model} ({self.arch}; {int8}, {bf16})"

    def record(self) -> dict:
        """The fields every results and benchmark JSON carries under "cpu"."""
        fields = asdict(self)
        fields["flags"] = [flag for flag in REPORTED_FLAGS if flag in self.flags]
        fields["arm_features"] = sorted(self.arm_features & {"bf16", "i8mm", "asimddp"})
        fields.update(vnni=self.has_vnni, native_bf16=self.has_native_bf16,
                      int8_accumulation=self.int8_accumulation, description=self.describe())
        return fields


def parse_cpuinfo(text: str, arch: str | None = None) -> CpuFeatures:
    """CpuFeatures from the text of /proc/cpuinfo (the first processor's entries)."""
    model, flags, arm = "", frozenset(), frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        elif key == "Features" and not arm:
            arm = frozenset(value.split())
    arch = (arch or platform.machine() or "unknown").lower()
    return CpuFeatures(model or platform.processor() or "unknown", arch, flags, arm)


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU (read once). $TEXTSEG_CPUINFO names a file to read instead of
    /proc/cpuinfo: under a CPU emulator (scripts/emulate_cpu.sh) /proc/cpuinfo is the host's."""
    source = os.environ.get("TEXTSEG_CPUINFO") or "/proc/cpuinfo"
    try:
        with open(source, encoding="utf-8", errors="replace") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return parse_cpuinfo("")


def with_cpu(results: dict) -> dict:
    """`results` with this machine's CPU under "cpu": every figure names where it came from."""
    return {**results, "cpu": cpu_features().record()}


def write_results(path: str | Path, results: dict, indent: int = 1) -> Path:
    """`results` with this machine's CPU (with_cpu), written atomically as JSON to `path`."""
    from textseg.fileio import atomic_write_bytes

    text = json.dumps(with_cpu(results), indent=indent) + "\n"
    return atomic_write_bytes(path, text.encode())
