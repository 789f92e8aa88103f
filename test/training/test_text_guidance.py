"""Textual Guidance Module (TGM) and its integration into STDC-Seg: scores, export, freezing."""

import io
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

# Allow `pytest test/` from the repo root without PYTHONPATH=training.
_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
if str(_TRAINING_DIR) not in sys.path:
    sys.path.insert(0, str(_TRAINING_DIR))

import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from textseg_training.model import SegModelConfig, STDCSeg, TextGuidance, build_model  # noqa: E402

H, W = 64, 96
# STDC1-Seg deploy parameters at 19 classes (= the official count) and ARM32's 3x3 conv growth
# by K = 19 input channels: 19 * 128 * 3 * 3 (method.md).
STDC1_DEPLOY_19 = 8_275_104
ARM32_EXTRA_19 = 21_888


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_score_is_the_hand_computed_cosine():
    # 2 channels, 2 classes, a 1x2 feature map: pixel (0,0) = (3, 4), pixel (0,1) = (1, 0).
    tgm = TextGuidance(in_chs=2, num_classes=2, text_width=2)
    assert tgm.proj is None
    tgm.set_text_embeddings(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    f32 = torch.tensor([[[[3.0, 1.0]], [[4.0, 0.0]]]])  # [1, 2, 1, 2]
    fused, score = tgm(f32)
    expected = torch.tensor([[[[3 / 5, 1.0]], [[4 / 5, 0.0]]]])
    torch.testing.assert_close(score, expected)
    # Fused = the original (unnormalised) F32, then the K score maps.
    torch.testing.assert_close(fused, torch.cat([f32, expected], dim=1))
    assert tgm.out_chs == 4


def test_embeddings_argument_overrides_buffer_and_carries_gradients():
    tgm = TextGuidance(in_chs=8, num_classes=3, text_width=8)
    f32 = torch.randn(2, 8, 2, 3)
    emb = torch.randn(3, 8, requires_grad=True)
    _, score = tgm(f32, emb)
    expected = torch.einsum(
        "nchw,kc->nkhw", F.normalize(f32, dim=1), F.normalize(emb.detach(), dim=1)
    )
    torch.testing.assert_close(score.detach(), expected)
    score.sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    # The buffer is untouched by the override (still the zero init: scores are 0, not NaN).
    _, buffered = tgm(f32)
    assert torch.equal(buffered, torch.zeros_like(buffered))


def test_set_text_embeddings_checks_shape():
    tgm = TextGuidance(in_chs=16, num_classes=4, text_width=16)
    with pytest.raises(ValueError, match=r"\[4, 16\].*\[4, 8\]"):
        tgm.set_text_embeddings(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="num_classes"):
        tgm(torch.randn(1, 16, 2, 2), torch.zeros(5, 16))
    model = STDCSeg("stdc1", num_classes=3)
    with pytest.raises(ValueError, match="text_width=0"):
        model.set_text_embeddings(torch.zeros(3, 1024))


def test_projection_only_when_widths_differ():
    clip = STDCSeg("stdc1", num_classes=5, text_width=1024, deploy=True)
    assert clip.tgm is not None and clip.tgm.proj is None
    minilm = STDCSeg("stdc1", num_classes=5, text_width=384, deploy=True)
    assert minilm.tgm.proj is not None
    assert (minilm.tgm.proj.in_channels, minilm.tgm.proj.out_channels) == (1024, 384)
    baseline = STDCSeg("stdc1", num_classes=5, deploy=True)
    assert baseline.tgm is None and baseline.text_channels == 0
    # ARM32 and the global branch see F32 plus K score maps, whatever the text width.
    for model in (clip, minilm):
        assert model.text_channels == 5
        assert model.cp.arm32.conv.conv.in_channels == 1024 + 5
        assert model.cp.conv_avg.conv.in_channels == 1024 + 5


def test_training_dict_has_score_and_deploy_returns_logits():
    k = 4
    model = build_model(SegModelConfig("stdc1", num_classes=k, text_width=384))
    model.set_text_embeddings(torch.randn(k, 384))
    out = model(torch.randn(2, 3, H, W))
    assert set(out) == {"out", "aux16", "aux32", "detail", "score"}
    assert out["score"].shape == (2, k, H // 32, W // 32)
    assert out["score"].abs().max() <= 1.0 + 1e-5
    # Stage 2: per-step embeddings reach the prompts through the score and the head.
    emb = torch.randn(k, 384, requires_grad=True)
    out = model(torch.randn(2, 3, H, W), text_embeddings=emb)
    (out["out"].sum() + out["score"].sum()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0

    deploy = build_model(SegModelConfig("stdc1", num_classes=k, text_width=384), deploy=True)
    deploy.load_state_dict(model.deploy_state_dict(), strict=True)
    assert "tgm.text_embeddings" in model.deploy_state_dict()
    torch.testing.assert_close(deploy.tgm.text_embeddings, model.tgm.text_embeddings)
    with torch.no_grad():
        logits = deploy.eval()(torch.randn(1, 3, H, W))
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, k, H // 8, W // 8)


def test_baseline_rejects_text_embeddings():
    model = STDCSeg("stdc1", num_classes=3, deploy=True).eval()
    with pytest.raises(ValueError, match="without TGM"):
        model(torch.randn(1, 3, H, W), text_embeddings=torch.zeros(3, 1024))


def test_deploy_param_cost_of_tgm_k19():
    base = STDCSeg("stdc1", num_classes=19, deploy=True)
    tgm = STDCSeg("stdc1", num_classes=19, deploy=True, text_width=1024)
    assert _n_params(base) == STDC1_DEPLOY_19
    # ARM32's 3x3 conv grows by exactly the method's +21,888 ...
    assert _n_params(tgm.cp.arm32) - _n_params(base.cp.arm32) == ARM32_EXTRA_19
    # ... and the global branch's 1x1 conv_avg, which also reads the fused F32, by 19 * 128.
    assert _n_params(tgm.cp.conv_avg) - _n_params(base.cp.conv_avg) == 19 * 128
    assert _n_params(tgm) == STDC1_DEPLOY_19 + ARM32_EXTRA_19 + 19 * 128  # 8,299,424
    # The embeddings are a buffer (in the state dict), not parameters.
    assert tgm.state_dict()["tgm.text_embeddings"].shape == (19, 1024)


def test_tgm_deploy_graph_exports_to_onnx_and_matches_pytorch():
    ort = pytest.importorskip("onnxruntime")
    k = 6
    model = build_model(SegModelConfig("stdc1", num_classes=k, text_width=1024), deploy=True)
    model.set_text_embeddings(torch.randn(k, 1024))
    model.eval()
    x = torch.randn(1, 3, H, W)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"])
        expected = model(x).numpy()
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    # The embeddings are inside the graph: other embeddings give other logits.
    with torch.no_grad():
        model.set_text_embeddings(torch.randn(k, 1024))
        assert not np.allclose(model(x).numpy(), got, atol=1e-4)


def test_tgm_model_through_project_export(tmp_path):
    pytest.importorskip("onnxruntime")
    from textseg.engine.contract import ModelInfo
    from textseg_training.export import export_onnx

    names = [f"c{i}" for i in range(5)]
    model = build_model(SegModelConfig("stdc1", num_classes=5, text_width=384), deploy=True)
    model.set_text_embeddings(torch.randn(5, 384))
    info = ModelInfo(class_names=names, palette=[(i, i, i) for i in range(5)],
                     network_input_size=(H, W), architecture="stdc1-seg-tgm", dataset="test",
                     training_stage="random-init")
    report = export_onnx(model.eval(), info, tmp_path / "tgm.onnx", model.backbone.input_mean,
                         model.backbone.input_std)
    assert report.parity_agreement >= 0.999, report


def test_param_groups_put_projection_in_head_group():
    model = build_model(SegModelConfig("stdc1", num_classes=3, text_width=64))
    groups = {g["name"]: g for g in model.param_groups(lr=0.01, weight_decay=5e-4)}
    proj = model.tgm.proj.weight
    assert any(p is proj for p in groups["head_decay"]["params"])
    assert groups["head_decay"]["lr"] == pytest.approx(0.1)


def test_freeze_backbone_keeps_weights_and_bn_stats():
    model = build_model(SegModelConfig("stdc1", num_classes=3, text_width=1024))
    model.set_text_embeddings(torch.randn(3, 1024))
    model.freeze_backbone()
    assert model.backbone_frozen
    before_backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    before_head = {k: v.clone() for k, v in model.cp.state_dict().items()}
    groups = model.param_groups(lr=0.01, weight_decay=5e-4)
    assert {g["name"] for g in groups} == {"head_decay", "head_no_decay"}
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
    emb = torch.randn(3, 1024, requires_grad=True)  # stage 2: prompts feed the TGM each step
    opt.add_param_group({"params": [emb], "lr": 0.01, "weight_decay": 0.0})
    for _ in range(3):
        model.train()  # must not flip the frozen backbone back to training mode
        assert model.training and not model.backbone.training
        assert not any(m.training for m in model.backbone.modules())
        out = model(torch.randn(2, 3, H, W), text_embeddings=emb)
        loss = sum(v.float().pow(2).mean() for v in out.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in model.backbone.parameters())
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before_backbone[k]), k
    changed = [k for k, v in model.cp.state_dict().items() if not torch.equal(v, before_head[k])]
    assert any("running_mean" in k for k in changed) and any("weight" in k for k in changed)

    model.freeze_backbone(False)
    model.train()
    assert model.backbone.training
    assert all(p.requires_grad for p in model.backbone.parameters())
