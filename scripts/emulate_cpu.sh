#!/usr/bin/env bash
# Run a command of the project's Python on an emulated CPU (QEMU user mode), to see what
# another kind of x86 CPU computes, e.g. int8 without VNNI on a machine that has it:
#
#   scripts/emulate_cpu.sh [-cpu MODEL] -m textseg.cli eval-offline out/bags/camvid_val \
#       --model models/textseg_default_int8_cpu.onnx
#
# MODEL: a `qemu-x86_64 -cpu help` name; default EPYC-Rome (AVX2, no AVX-512, no VNNI).
# Needs qemu-user (Debian: apt-get install qemu-user). About 100x slower than the host: for
# numerics, never for speed. The CPU recorded in results (textseg.cpu) is the emulated one,
# read from its CPUID through numpy and named "(emulated by QEMU)".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cpu=EPYC-Rome
if [ "${1:-}" = "-cpu" ]; then cpu="$2"; shift 2; fi
if ! command -v qemu-x86_64 > /dev/null; then
  echo "emulate_cpu: qemu-x86_64 not found (apt-get install qemu-user)" >&2
  exit 2
fi
py="$root/.venv/bin/python"
quiet() { grep -v "TCG doesn't support requested feature" >&2 || true; }
# The ROS wheels' bootstrap re-executes Python once to set LD_LIBRARY_PATH; an execve would
# leave the emulator, so the environment is prepared here and the re-execution skipped.
eval "$("$py" -c 'import os, shlex; print("export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 LD_LIBRARY_PATH=" + shlex.quote(os.environ.get("LD_LIBRARY_PATH", "")))')"
cpuinfo="$(mktemp "${TMPDIR:-/tmp}/textseg_cpuinfo.XXXXXX")"
trap 'rm -f "$cpuinfo"' EXIT
qemu-x86_64 -cpu "$cpu" "$py" -c '
import sys
from numpy._core._multiarray_umath import __cpu_features__ as f
names = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni",
         "AVXVNNI": "avx_vnni", "AVX512_BF16": "avx512_bf16", "FMA3": "fma"}
flags = " ".join(flag for key, flag in names.items() if f.get(key))
print(f"model name\t: {sys.argv[1]} (emulated by QEMU)\nflags\t\t: {flags}")
' "$cpu" > "$cpuinfo" 2> >(quiet)
export TEXTSEG_CPUINFO="$cpuinfo"
qemu-x86_64 -cpu "$cpu" "$py" "$@" 2> >(quiet)
