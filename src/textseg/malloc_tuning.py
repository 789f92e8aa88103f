"""Keep camera-size buffers in the heap instead of fresh mmap()s (glibc only).

glibc serves allocations above its mmap threshold with a new mmap() and unmaps them on free,
so every 2.7 MB frame buffer (DDS history, deserialisation, the Python message) costs ~700
page faults, again for every frame. Measured here, receiving one 1280x720 rgb8 Image over DDS
in rclpy took 7.5 ms of CPU with the defaults and 2.1 ms with large buffers kept in the heap
(rclpy's take_message alone: 5.2 ms -> 0.7 ms). On a 2-core machine that CPU is taken from
inference. The heap then stays at its high-water mark (a few frames), which is flat by design.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit (HEAP_MAX_SIZE / 2): a 4K rgb8 frame.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20


def keep_large_buffers_in_heap() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
