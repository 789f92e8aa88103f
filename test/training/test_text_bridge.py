"""The bidirectional fusion bridge (seed 001): shapes on every backbone, the text really used,
gradients to the prompts, and an export that ONNX Runtime runs like PyTorch and TensorRT's
parser rules accept."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("textseg_training", reason="training package not installed")

from textseg_training.model import BACKBONE_BUILDERS, SegModelConfig, build_model  # noqa: E402
from textseg_training.model.complexity import count_gmacs, count_parameters  # noqa: E402
from textseg_training.model.text_bridge import TextBridge  # noqa: E402

K, WIDTH = 11, 384


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def _bridge_model(backbone: str = "efficientnet_lite0", deploy: bool = False):
    model = build_model(SegModelConfig(backbone, K, WIDTH, "bridge"), deploy=deploy)
    model.set_text_embeddings(torch.nn.functional.normalize(torch.randn(K, WIDTH), dim=1))
    return model


@pytest.mark.parametrize("backbone", sorted(BACKBONE_BUILDERS))
def test_shapes_on_every_backbone(backbone):
    model = _bridge_model(backbone).eval()
    assert isinstance(model.tgm, TextBridge)
    c32 = model.backbone.feature_channels[-1]
    assert model.cp.arm32.conv.conv.in_channels == c32 + K  # the TGM's interface exactly
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 128))
    assert out["out"].shape == (2, K, 12, 16)
    assert out["score"].shape == (2, K, 3, 4)
    assert out["score"].abs().max() <= 1.0 + 1e-5  # a cosine


def test_the_bridge_uses_the_text():
    model = _bridge_model().eval()
    image = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        first = model(image)
        model.set_text_embeddings(torch.nn.functional.normalize(torch.randn(K, WIDTH), dim=1))
        second = model(image)
    assert (first["score"] - second["score"]).abs().max() > 0.05
    assert not torch.equal(first["out"], second["out"])  # and the segmentation follows


def test_gradients_reach_the_prompts_through_the_bridge():
    model = _bridge_model().train()
    prompts = torch.nn.Parameter(torch.randn(K, WIDTH))  # what a prompt learner outputs
    out = model(torch.randn(2, 3, 96, 128), text_embeddings=prompts)
    (out["score"].sum() + out["out"].sum()).backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0


def test_cost_beside_the_tgm_is_counted():
    bridge = build_model(SegModelConfig("efficientnet_lite0", K, WIDTH, "bridge"), deploy=True)
    tgm = build_model(SegModelConfig("efficientnet_lite0", K, WIDTH, "tgm"), deploy=True)
    assert count_parameters(bridge) > count_parameters(tgm)
    assert count_gmacs(bridge, (96, 128)) > count_gmacs(tgm, (96, 128))


def test_export_runs_in_onnx_runtime_like_pytorch_and_passes_the_tensorrt_rules(tmp_path,
                                                                                 camvid_frames):
    pytest.importorskip("onnxruntime")
    from textseg.engine import load_backend
    from textseg.engine.contract import ModelInfo
    from textseg.engine.tensorrt_rules import check_tensorrt_rules
    from textseg_training.dataset_specs import CAMVID
    from textseg_training.export import export_onnx

    model = _bridge_model(deploy=True).eval()
    info = ModelInfo(class_names=CAMVID.class_names, palette=CAMVID.palette,
                     network_input_size=(96, 128), architecture="efficientnet_lite0-seg+bridge")
    frames = [rgb for _, rgb in camvid_frames(3)]
    report = export_onnx(model, info, tmp_path / "bridge.onnx", model.backbone.input_mean,
                         model.backbone.input_std, with_confidence=True, check_images=frames)
    assert report.parity_agreement >= 0.999
    assert check_tensorrt_rules(report.path) == []
    assert load_backend(report.path).infer(frames[0]).labels.shape == frames[0].shape[:2]


@pytest.mark.parametrize("layers, width", [(1, 64), (3, 96)])
def test_bridge_size_comes_from_the_model_config(layers, width):
    config = SegModelConfig("efficientnet_lite0", K, WIDTH, "bridge", bridge_layers=layers,
                            bridge_width=width)
    model = build_model(config)
    assert len(model.tgm.layers) == layers
    assert model.tgm.layers[0].conv.depthwise.in_channels == width
    # Checkpoints carry the config: rebuilt from its dict, the same architecture.
    again = build_model(SegModelConfig.from_dict(config.to_dict()))
    assert again.state_dict().keys() == model.state_dict().keys()
    # Configs written before the sizes existed rebuild the default bridge.
    old = {k: v for k, v in config.to_dict().items() if not k.startswith("bridge_")}
    assert SegModelConfig.from_dict(old).bridge_layers == 2


def test_train_config_refuses_a_bridge_width_the_heads_cannot_split():
    from textseg_training.trainer.config import TrainConfig

    with pytest.raises(ValueError, match="multiple of 32"):
        TrainConfig(text_fusion="bridge", bridge_width=100)
