"""Streaming keeps memory flat: the small-scale version of scripts/bench_replay_memory.py.

60 CamVid frames at 1280x720 (a 220 MB bag) are read, decoded and matched with their labels;
this process's resident memory may not grow by more than a fraction of the bag. The full
check (1,000 frames, < 100 MB growth, also through ONNX Runtime and the node) is the script.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from textseg.replay.bagio import BagSource
from textseg.replay.dataset import FrameBagWriter

FRAMES = 60
SIZE = (1280, 720)
GROWTH_LIMIT = 60 * 2**20  # a quarter of the bag; holding it would take > 200 MB


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status (not Linux)")


@pytest.fixture(scope="module")
def big_bag(camvid_dir, tmp_path_factory) -> Path:
    paths = sorted((camvid_dir / "val").glob("*.png"))[:6]
    frames = []
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        labels = cv2.imread(str(camvid_dir / "valannot" / path.name), cv2.IMREAD_UNCHANGED)
        frames.append((cv2.resize(rgb, SIZE), cv2.resize(labels, SIZE,
                                                        interpolation=cv2.INTER_NEAREST)))
    bag = tmp_path_factory.mktemp("big_bag") / "big"
    with FrameBagWriter(bag) as writer:
        for i in range(FRAMES):
            rgb, labels = frames[i % len(frames)]
            writer.write_frame(rgb, 1_700_000_000 * 10**9 + i * 33_000_000, labels)
    return bag


def test_reading_a_big_bag_does_not_accumulate(big_bag):
    bag_bytes = sum(p.stat().st_size for p in big_bag.rglob("*") if p.is_file())
    assert bag_bytes > 200 * 2**20
    baseline = peak = None
    checksum = 0
    with BagSource(big_bag) as source:
        for n, frame in enumerate(source.frames(), 1):
            rgb = frame.rgb()
            assert rgb.shape == (720, 1280, 3) and frame.labels.shape == (720, 1280)
            checksum += int(rgb[360, 640].sum()) + int(frame.labels[360, 640])
            if n == 10:
                baseline = peak = _rss()
            elif n > 10:
                peak = max(peak, _rss())
    assert n == FRAMES and checksum > 0
    growth = peak - baseline
    assert growth < GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MB over {FRAMES} frames"


def test_frames_are_released_after_use(big_bag):
    """Nothing keeps a reference to frames already handed out (weakrefs die)."""
    import gc
    import weakref

    refs = []
    with BagSource(big_bag) as source:
        for n, frame in enumerate(source.frames(), 1):
            refs.append((weakref.ref(frame), weakref.ref(frame.msg.data)))
            del frame
            if n == 20:
                break
        gc.collect()
        alive = sum(a() is not None or b() is not None for a, b in refs)
    assert alive == 0, f"{alive} of {len(refs)} frames handed out are still referenced"
