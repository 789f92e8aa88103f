"""glibc malloc tuning for camera-size buffers (see src/textseg/malloc_tuning.py)."""

from __future__ import annotations

import subprocess
import sys

from textseg.malloc_tuning import keep_large_buffers_in_heap


def _minor_faults_for_fresh_frames(tuned: bool) -> int:
    """Minor page faults while allocating and freeing 50 2.7 MB buffers, in a fresh process."""
    code = (
        "import resource, numpy as np\n"
        "from textseg.malloc_tuning import keep_large_buffers_in_heap\n"
        f"assert keep_large_buffers_in_heap() if {tuned} else True\n"
        "np.ones(720 * 1280 * 3, np.uint8)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(50):\n"
        "    np.ones(720 * 1280 * 3, np.uint8)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_applies_here():
    assert keep_large_buffers_in_heap() is True  # glibc (Debian); idempotent
    assert keep_large_buffers_in_heap() is True


def test_large_buffers_stop_faulting_in_fresh_pages():
    default, tuned = _minor_faults_for_fresh_frames(False), _minor_faults_for_fresh_frames(True)
    assert tuned * 10 < default, (default, tuned)
