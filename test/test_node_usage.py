"""`segmentation_node --help` and the lifecycle twin's: the installed entry points print a
short usage and exit 0 at once, without starting a node (no rclpy init, no model load)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("program", ["segmentation_node", "segmentation_lifecycle_node"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_starts_no_node(program, flag):
    entry = BIN / program
    if not entry.exists():
        pytest.skip(f"{program} is not installed in this venv (scripts/setup.sh)")
    started = time.monotonic()
    done = subprocess.run([str(entry), flag], capture_output=True, text=True, timeout=20)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"usage: {program} ")
    for needed in ("--ros-args -p", "--params-file", "docs/node.md",
                   "config/segmentation.yaml", "ros2 launch"):
        assert needed in out
    # a node logs its model and backend, and would keep running until stopped
    assert "[INFO]" not in out + done.stderr and "backend" not in out + done.stderr
    assert seconds < 10.0


def test_help_after_ros_args_is_not_ours():
    """`--ros-args ... --help` belongs to rcl: only our own arguments ask for the usage."""
    from textseg.node.usage import help_requested

    assert not help_requested(["--ros-args", "-p", "a:=1", "--help"])
    assert not help_requested([])
    assert help_requested(["--help", "--ros-args", "-p", "a:=1"])
