"""Parameter / MAC counting against the official STDC-Seg anchors."""

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

# Allow `pytest test/` from the repo root without PYTHONPATH=training.
_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
if str(_TRAINING_DIR) not in sys.path:
    sys.path.insert(0, str(_TRAINING_DIR))

from torch import nn  # noqa: E402

from textseg_training.model import SegModelConfig, build_model  # noqa: E402
from textseg_training.model.complexity import (  # noqa: E402
    ComplexityRow,
    complexity_table,
    count_gmacs,
    count_parameters,
    measure,
)

# Official STDC-Seg deploy graphs, 19 classes, convolutions only, 512x1024 (method.md).
GMAC_ANCHORS = {"stdc1": 16.86, "stdc2": 23.46}


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.mark.parametrize("backbone", sorted(GMAC_ANCHORS))
def test_gmacs_match_official_anchors(backbone):
    model = build_model(SegModelConfig(backbone, num_classes=19), deploy=True)
    gmacs = count_gmacs(model, (512, 1024))
    print(f"{backbone}-seg deploy, 19 classes, 512x1024: {gmacs:.3f} GMACs")
    assert abs(gmacs - GMAC_ANCHORS[backbone]) / GMAC_ANCHORS[backbone] < 0.03


def test_hand_counted_toy_net_and_training_mode_restored():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # out 8x4x4: 128 * 3 * 9 = 3456
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 128 * 1 * 9 = 1152
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),  # 5 * 8 = 40
    )
    net.train()
    assert count_gmacs(net, (8, 8)) * 1e9 == pytest.approx(3456 + 1152 + 40)
    assert net.training
    assert count_parameters(net) == (3 * 8 * 9 + 8) + (8 * 9 + 8) + (8 * 5 + 5)
    net[0].weight.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == count_parameters(net) - 3 * 8 * 9


def test_tgm_adds_cosine_macs():
    size = (64, 96)
    k, width = 19, 1024
    base = count_gmacs(build_model(SegModelConfig("stdc1", k), deploy=True), size)
    tgm = count_gmacs(build_model(SegModelConfig("stdc1", k, text_width=width), deploy=True), size)
    h, w = size[0] // 32, size[1] // 32
    cosine = k * width * h * w
    # + the cosine, + K extra input channels of ARM32 (3x3 at 1/32) and of conv_avg (1x1 at 1x1).
    extra = cosine + k * 128 * 9 * h * w + k * 128
    assert (tgm - base) * 1e9 == pytest.approx(extra, rel=1e-6)


def test_complexity_table_markdown():
    model = build_model(SegModelConfig("stdc1", 19), deploy=True)
    row = measure("stdc1-seg", model, (64, 128))
    assert row.params == 8_275_104
    table = complexity_table([row, ComplexityRow("other", (360, 480), 1_234_567, 3.456)])
    lines = table.splitlines()
    assert lines[0] == "| model | input (HxW) | params | GMACs |"
    assert len(lines) == 4
    assert lines[2].startswith("| stdc1-seg | 64x128 | 8.275M (8,275,104) |")
    assert lines[3] == "| other | 360x480 | 1.235M (1,234,567) | 3.46 |"
