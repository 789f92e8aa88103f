"""Property-based: thousands of random and malformed messages through a real node over DDS.

Hypothesis generates sensor_msgs/Image messages (valid ones of random size, encoding, row
padding and content, and malformed ones: unknown encodings, zero and absurd sizes, step
smaller than a row, truncated or oversized data, random headers) and CompressedImage messages
(valid JPEG/PNG, truncated, garbage, decompression-bomb headers, corrupted bodies). Every
valid frame must be answered with its header and size; the node must never crash and must
count every malformed message in its diagnostics.

The node subscribes reliably with a deep queue here so that no message is lost on the way and
the counts can be compared exactly (the newest-frame-only default is tested elsewhere).
"""

from __future__ import annotations

import itertools
import os

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from textseg.client.frame_client import FrameClient, stamp_key  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
MAX_PIXELS = 100_000  # far above the fuzzed frames, far below the absurd ones
# At least this many raw messages go through the node; scripts/soak.py raises it to 10,000.
RAW_MESSAGES = int(os.environ.get("TEXTSEG_FUZZ_RAW_MESSAGES", "2000"))
COMPRESSED_MESSAGES = 300
UINT32 = st.integers(0, 2**32 - 1)
_stamps = itertools.count(1)
FUZZ_SETTINGS = dict(deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.large_base_example])


def _stamp() -> Time:
    n = next(_stamps)
    return Time(sec=1_500_000_000 + n // 1000, nanosec=n % 1000)


def valid_raw(encoding: str, height: int, width: int, step: int, data: bytes) -> bool:
    """The oracle, written from the message definition (not from the node's code)."""
    channels = CHANNELS.get(encoding)
    return (channels is not None and height > 0 and width > 0
            and height * width <= MAX_PIXELS and step >= width * channels
            and len(data) == height * step)


@st.composite
def good_images(draw):
    encoding = draw(st.sampled_from(sorted(CHANNELS)))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    step = width * CHANNELS[encoding] + draw(st.integers(0, 7))
    data = draw(st.binary(min_size=height * step, max_size=height * step))
    return encoding, height, width, step, data


@st.composite
def bad_images(draw):
    encoding, height, width, step, data = draw(good_images())
    kind = draw(st.sampled_from(["encoding", "zero", "step", "truncated", "extra", "absurd",
                                 "random"]))
    if kind == "encoding":
        encoding = draw(st.sampled_from(["yuv422", "16UC1", "bayer_rggb8", "", "RGB8", "rgb16",
                                         "32FC1", "jpeg"]) | st.text(max_size=12))
    elif kind == "zero":
        height, width = draw(st.sampled_from([(0, width), (height, 0), (0, 0)]))
    elif kind == "step":
        step = draw(st.integers(0, max(0, width * CHANNELS[encoding] - 1)))
        data = data[: height * step]
    elif kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "extra":
        data += draw(st.binary(min_size=1, max_size=64))
    elif kind == "absurd":
        height, width = draw(st.integers(50_000, 2**32 - 1)), draw(st.integers(50_000,
                                                                               2**32 - 1))
        step = draw(UINT32)
    else:
        encoding = draw(st.sampled_from(sorted(CHANNELS)) | st.text(max_size=8))
        height, width, step = draw(UINT32), draw(UINT32), draw(UINT32)
        data = draw(st.binary(max_size=64))
    return encoding, height, width, step, data


frame_ids = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                                  exclude_categories=("Cs",)), max_size=16)
raw_batches = st.lists(st.tuples(good_images() | bad_images(), frame_ids, st.booleans()),
                       min_size=5, max_size=10)


def _fuzz_node(tiny_model_path, ros_env, ros_context, namespace, transport):
    node = NodeProcess({"model": str(tiny_model_path), "threads": 1, "transport": transport,
                        "qos_reliability": "reliable", "qos_depth": 1000,
                        "max_image_pixels": MAX_PIXELS, "diagnostics_period": 0.5},
                       env=ros_env, namespace=namespace).start()
    topic = f"{namespace}/image" + ("/compressed" if transport == "compressed" else "")
    client = FrameClient(context=ros_context, image_topic=topic,
                         labels_topic=f"{namespace}/labels/image", name=f"fuzz_{transport}",
                         transport=transport, diagnostics=True, depth=5000)
    client.wait_for_node(timeout=60.0, alive=node.alive)
    return node, client, {"sent": 0, "valid": 0, "invalid": 0, "answered": 0}


@pytest.fixture(scope="module")
def raw_fuzz(tiny_model_path, ros_env, ros_context):
    node, client, counts = _fuzz_node(tiny_model_path, ros_env, ros_context, "/fuzz", "raw")
    yield node, client, counts
    client.close()
    code = node.stop()
    assert code == 0, f"the node did not exit cleanly ({code}):\n{node.log_text()[-3000:]}"


def _final_diagnostics(client, node_name, received, timeout=20.0):
    """The node's diagnostics once it has received `received` messages and has no frame in
    flight (processed + rejected + dropped + failed add up)."""
    found = {}

    def settled():
        entry = client.node_diagnostics(node_name)
        if entry is None:
            return False
        v = found["values"] = entry[0]
        done = sum(int(v[k]) for k in ("frames processed", "messages rejected",
                                       "frames dropped", "inference failures"))
        return int(v["messages received"]) >= received and done >= received

    client.wait_for(settled, timeout)
    return found.get("values", {})


@settings(max_examples=RAW_MESSAGES // 5, **FUZZ_SETTINGS)
@given(batch=raw_batches)
def test_random_and_malformed_images_never_crash_the_node(raw_fuzz, batch):
    node, client, counts = raw_fuzz
    for (encoding, height, width, step, data), frame_id, bigendian in batch:
        msg = Image()
        msg.header.stamp, msg.header.frame_id = _stamp(), frame_id
        msg.encoding, msg.height, msg.width, msg.step = encoding, height, width, step
        msg.is_bigendian = int(bigendian)
        msg.data = data
        counts["sent"] += 1
        if not valid_raw(encoding, height, width, step, data):
            counts["invalid"] += 1
            client.publish(msg)
            continue
        counts["valid"] += 1
        reply = client.exchange(msg, timeout=15.0, resend_after=15.0)
        assert reply is not None, (f"no labels for a valid {encoding} {width}x{height} step "
                                   f"{step} frame:\n{node.log_text()[-3000:]}")
        labels, _ = reply
        assert stamp_key(labels) == stamp_key(msg)
        assert labels.header.frame_id == frame_id
        assert (labels.height, labels.width, labels.encoding) == (height, width, "mono8")
        assert len(labels.data) == height * width
        counts["answered"] += 1
    assert node.alive(), node.log_text()[-3000:]


def test_raw_fuzz_totals_every_message_accounted_for(raw_fuzz):
    node, client, counts = raw_fuzz
    assert counts["sent"] >= RAW_MESSAGES
    assert counts["valid"] > 200 and counts["invalid"] > 200, counts
    assert counts["answered"] == counts["valid"]
    values = _final_diagnostics(client, "/fuzz/segmentation_node", counts["sent"])
    assert node.alive()
    assert int(values["frames processed"]) == counts["valid"], (values, counts)
    assert int(values["messages rejected"]) == counts["invalid"], (values, counts)
    assert int(values["messages received"]) == counts["sent"], (values, counts)
    assert values["inference failures"] == "0"
    reasons = {k.split(": ")[1] for k in values if k.startswith("rejected: ")}
    assert {"encoding", "size", "step", "data_size"} <= reasons
    log = node.log_text()
    assert "Traceback" not in log
    assert "rejected image (encoding)" in log and "rejected image (size)" in log


# --- compressed -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compressed_fuzz(tiny_model_path, ros_env, ros_context):
    node, client, counts = _fuzz_node(tiny_model_path, ros_env, ros_context, "/cfuzz",
                                      "compressed")
    counts["mangled"] = 0
    yield node, client, counts
    client.close()
    code = node.stop()
    assert code == 0, f"the node did not exit cleanly ({code}):\n{node.log_text()[-3000:]}"


def _bomb_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + end)


@st.composite
def compressed_cases(draw):
    """(data, expectation): 'valid' must be answered, 'invalid' rejected, 'mangled' either."""
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**31))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    fmt = draw(st.sampled_from([".png", ".jpg"]))
    ok, encoded = cv2.imencode(fmt, pixels)
    data = encoded.tobytes()
    kind = draw(st.sampled_from(["valid", "valid", "truncated", "garbage", "bomb", "empty",
                                 "mangled"]))
    if kind == "truncated":
        return data[: draw(st.integers(1, len(data) - 3))], "invalid"
    if kind == "garbage":
        junk = draw(st.binary(min_size=1, max_size=512))
        if junk.startswith((b"\x89PNG", b"\xff\xd8")):
            junk = b"x" + junk
        return junk, "invalid"
    if kind == "bomb":
        return _bomb_png(draw(st.integers(400, 60_000)), draw(st.integers(400, 60_000))), \
            "invalid"
    if kind == "empty":
        return b"", "invalid"
    if kind == "mangled":
        buffer = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            buffer[draw(st.integers(20, len(buffer) - 3))] = draw(st.integers(0, 255))
        return bytes(buffer), "mangled"
    return data, "valid"


@settings(max_examples=COMPRESSED_MESSAGES // 5, **FUZZ_SETTINGS)
@given(batch=st.lists(compressed_cases(), min_size=5, max_size=8))
def test_random_and_malformed_compressed_images_never_crash_the_node(compressed_fuzz, batch):
    node, client, counts = compressed_fuzz
    for data, expectation in batch:
        msg = CompressedImage()
        msg.header.stamp, msg.header.frame_id = _stamp(), "fuzz"
        msg.format = "jpeg"  # deliberately not always true: the node trusts the bytes
        msg.data = data
        counts["sent"] += 1
        if expectation == "valid":
            counts["valid"] += 1
            reply = client.exchange(msg, timeout=15.0, resend_after=15.0)
            assert reply is not None, node.log_text()[-3000:]
            assert reply[0].header.frame_id == "fuzz"
            counts["answered"] += 1
        else:
            counts[expectation] += 1
            client.publish(msg)
    assert node.alive(), node.log_text()[-3000:]


def test_compressed_fuzz_totals(compressed_fuzz):
    node, client, counts = compressed_fuzz
    assert counts["sent"] >= COMPRESSED_MESSAGES
    assert counts["answered"] == counts["valid"] > 50
    values = _final_diagnostics(client, "/cfuzz/segmentation_node", counts["sent"])
    assert node.alive()
    assert int(values["messages received"]) == counts["sent"], (values, counts)
    processed, rejected = int(values["frames processed"]), int(values["messages rejected"])
    # Mangled data may still decode (JPEG is forgiving) or be refused: either is fine.
    assert counts["invalid"] <= rejected <= counts["invalid"] + counts["mangled"], values
    assert processed + rejected + int(values["frames dropped"]) == counts["sent"], values
    assert values["inference failures"] == "0"
    assert "Traceback" not in node.log_text()
