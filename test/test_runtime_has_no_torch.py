"""The runtime package (what goes on the vehicle) never imports torch or open_clip."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "textseg"
FORBIDDEN = ("torch", "open_clip")
ROS_PACKAGES = ("textseg.node", "textseg.client")
FORBIDDEN_IMPORT = re.compile(
    r"^\s*(?:import\s+(?:torch|open_clip)\b|from\s+(?:torch|open_clip)\b[\w.]*\s+import\b)")


def _runtime_modules() -> list[str]:
    """Every module under src/textseg except the ROS node and client packages (need rclpy)."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if any(name == ros or name.startswith(f"{ros}.") for ros in ROS_PACKAGES):
            continue
        modules.append(name)
    return modules


def test_runtime_modules_found():
    modules = _runtime_modules()
    assert {"textseg", "textseg.imaging", "textseg.engine",
            "textseg.engine.onnxruntime_backend"} <= set(modules)


def test_importing_runtime_does_not_load_torch():
    modules = _runtime_modules()
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(FORBIDDEN)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=SRC)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("line, hit", [
    ("import torch", True),
    ("    import torch.nn as nn", True),
    ("from torch import nn", True),
    ("from torch.nn import functional as F", True),
    ("import open_clip", True),
    ("from open_clip import tokenizer", True),
    ("import torchvision", False),
    ("# import torch", False),
    ("from textseg import torch_free", False),
])
def test_forbidden_import_pattern(line, hit):
    assert bool(FORBIDDEN_IMPORT.match(line)) == hit


def test_no_torch_imports_in_source():
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN_IMPORT.match(line)
    ]
    assert offenders == []


ONNX_IMPORT = re.compile(
    r"^\s*(?:import\s+onnx\b(?!runtime)|from\s+onnx\b(?!runtime)[\w.]*\s+import\b)")


@pytest.mark.parametrize("line, hit", [
    ("import onnx", True), ("    from onnx import helper", True), ("import onnxruntime", False),
    ("from onnxruntime.quantization import quantize_static", False),
])
def test_onnx_import_pattern(line, hit):
    assert bool(ONNX_IMPORT.match(line)) == hit


def test_the_vehicle_engine_needs_no_onnx_package():
    """textseg.engine is what the vehicle imports: onnxruntime only; the converters that need
    the `onnx` package live in textseg.tools."""
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted((PACKAGE / "engine").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ONNX_IMPORT.match(line)
    ]
    assert offenders == []
    assert any(ONNX_IMPORT.match(line) for line in
               (PACKAGE / "tools" / "quantize.py").read_text(encoding="utf-8").splitlines())
