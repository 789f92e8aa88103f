"""scripts/setup.sh explains itself and refuses what it does not take, before touching a venv."""

from __future__ import annotations

import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True, timeout=30)


def test_help_says_what_it_does_and_how_to_pick_the_distro():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    assert "Idempotent set-up" in done.stdout
    assert "ROS_DISTRO=kilted" in done.stdout
    assert "setup:" not in done.stdout  # nothing was installed or checked


def test_an_unknown_argument_is_refused_by_name():
    done = _run("--jazzy")
    assert done.returncode == 2
    assert "unknown argument '--jazzy'" in done.stderr
