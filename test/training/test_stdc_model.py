"""Fast CPU tests for the STDC backbone and STDC-Seg model (training package)."""

import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

# Allow `pytest test/` from the repo root without PYTHONPATH=training.
_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
if str(_TRAINING_DIR) not in sys.path:
    sys.path.insert(0, str(_TRAINING_DIR))

from textseg_training.model import SegModelConfig, build_model  # noqa: E402
from textseg_training.model.stdc_backbone import STDCNet, stdc1  # noqa: E402
from textseg_training.model.stdc_seg import STDCSeg  # noqa: E402

# Deploy-graph parameter counts of the official STDC-Seg at 19 classes (main output only).
ANCHORS = {"stdc1": 8_275_104, "stdc2": 12_305_568}
BACKBONES = sorted(ANCHORS)
H, W = 64, 96


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_deploy_param_count_matches_official(backbone):
    n = _n_params(STDCSeg(backbone, num_classes=19, deploy=True))
    print(f"{backbone} deploy params (19 classes): {n:,}")
    assert abs(n - ANCHORS[backbone]) / ANCHORS[backbone] < 0.03


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_features(backbone):
    net = build_model(SegModelConfig(backbone=backbone)).backbone
    assert net.feature_channels == (32, 64, 256, 512, 1024)
    with torch.no_grad():
        feats = net(torch.randn(1, 3, H, W))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, H // s, W // s) for c, s in zip(net.feature_channels, (2, 4, 8, 16, 32), strict=True)
    ]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_shapes_train_and_deploy(backbone):
    k = 5
    # Batch 2: training-mode BN on the 1x1 global-context vector needs more than one value.
    x = torch.randn(2, 3, H, W)
    train = build_model(SegModelConfig(backbone=backbone, num_classes=k))
    out = train(x)
    assert set(out) == {"out", "aux16", "aux32", "detail"}
    assert out["out"].shape == (2, k, H // 8, W // 8)
    assert out["aux16"].shape == (2, k, H // 8, W // 8)
    assert out["aux32"].shape == (2, k, H // 16, W // 16)
    assert out["detail"].shape == (2, 1, H // 8, W // 8)

    deploy = build_model(SegModelConfig(backbone=backbone, num_classes=k), deploy=True).eval()
    with torch.no_grad():
        logits = deploy(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, k, H // 8, W // 8)
    names = [n for n, _ in deploy.named_parameters()]
    assert not any(n.startswith(("aux16.", "aux32.", "detail_head.")) for n in names)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_deploy_loads_training_weights(backbone):
    cfg = SegModelConfig(backbone=backbone, num_classes=4)
    train = build_model(cfg)
    train(torch.randn(2, 3, H, W))  # move BN running stats off their defaults
    train.eval()
    deploy = build_model(cfg, deploy=True).eval()
    deploy.load_state_dict(train.deploy_state_dict(), strict=True)
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), train(x)["out"], rtol=0, atol=0)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_param_groups_partition(backbone):
    model = build_model(SegModelConfig(backbone=backbone, num_classes=2, text_width=64))
    groups = model.param_groups(lr=0.01, weight_decay=5e-4, head_lr_mult=10.0)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay"}

    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}

    no_decay = {id(p) for n in ("backbone_no_decay", "head_no_decay") for p in by_name[n]["params"]}
    assert no_decay == {id(p) for p in model.parameters() if p.ndim <= 1}
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for g in groups:
        in_backbone = g["name"].startswith("backbone")
        assert all((id(p) in backbone_ids) == in_backbone for p in g["params"])
        assert g["lr"] == pytest.approx(0.01 if in_backbone else 0.1)
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 5e-4)


def test_text_guidance_widens_f32_consumers():
    # The TGM adds one score map per class to F32 (text_channels is derived from num_classes).
    model = STDCSeg("stdc1", num_classes=3, text_width=1024)
    assert model.text_channels == 3
    assert model.cp.arm32.conv.conv.in_channels == 1024 + 3
    assert model.cp.conv_avg.conv.in_channels == 1024 + 3


def test_model_config_round_trip():
    cfg = SegModelConfig(backbone="stdc2", num_classes=7, text_width=384)
    assert SegModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        SegModelConfig.from_dict({"backbone": "stdc1", "classes": 3})
    with pytest.raises(ValueError, match="text_channels"):
        SegModelConfig.from_dict({"backbone": "stdc1", "text_channels": 3})  # old name
    with pytest.raises(ValueError, match="resnet"):
        build_model(SegModelConfig(backbone="resnet"))


def test_load_official_checkpoint_round_trip(tmp_path):
    src = stdc1()
    for p in src.parameters():
        torch.nn.init.normal_(p)
    backbone_sd = src.state_dict()
    official = dict(backbone_sd)
    # The official ImageNet classifier, which must be skipped.
    official.update(
        {
            "conv_last.conv.weight": torch.zeros(1024, 1024, 1, 1),
            "fc.weight": torch.zeros(1024, 1024),
            "bn.weight": torch.zeros(1024),
            "linear.weight": torch.zeros(1000, 1024),
        }
    )
    path = tmp_path / "STDCNet813M_73.91.tar"
    torch.save({"state_dict": official, "epoch": 250}, path)

    dst = stdc1()
    report = dst.load_official_checkpoint(path)
    assert sorted(report.skipped_classifier) == sorted(
        ["conv_last.conv.weight", "fc.weight", "bn.weight", "linear.weight"]
    )
    assert set(report.matched) == set(backbone_sd)
    assert report.missing == [] and report.unexpected == []
    assert "loaded" in report.summary()
    for k, v in dst.state_dict().items():
        assert torch.equal(v, backbone_sd[k]), k


def test_load_official_checkpoint_plain_state_dict_with_aliases(tmp_path):
    src = stdc1()
    # Official models also register x2..x32 slices of `features` (STDC1: x8 = features[2:4])
    # and DataParallel adds "module."; both must resolve onto `features.N`.
    sd = {}
    for k, v in src.state_dict().items():
        idx, rest = k.split(".", 2)[1:]
        alias = f"x8.0.{int(idx) - 2}.{rest}" if idx in ("2", "3") else k
        sd[f"module.{alias}"] = v
    path = tmp_path / "plain.pth"
    torch.save(sd, path)
    dst = stdc1()
    report = dst.load_official_checkpoint(path)
    assert report.unexpected == [] and report.missing == []
    assert set(report.matched) == set(src.state_dict())
    for k, v in dst.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_load_official_checkpoint_rejects_garbage(tmp_path):
    path = tmp_path / "garbage.tar"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=re.escape("garbage.tar")):
        stdc1().load_official_checkpoint(path)

    unrelated = tmp_path / "unrelated.pth"
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, unrelated)
    with pytest.raises(ValueError, match=re.escape("unrelated.pth")):
        stdc1().load_official_checkpoint(unrelated)


def test_stdc2_checkpoint_into_stdc1_is_rejected(tmp_path):
    path = tmp_path / "stdc2.pth"
    torch.save({"state_dict": STDCNet(layers=(4, 5, 3)).state_dict()}, path)
    with pytest.raises(ValueError, match=re.escape("stdc2.pth")):
        stdc1().load_official_checkpoint(path)
