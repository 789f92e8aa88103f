"""textseg_training.export / `textseg-train export`: parity, contract metadata, atomic writes."""

import copy
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

# Allow `pytest test/` from the repo root without PYTHONPATH=training.
_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
if str(_TRAINING_DIR) not in sys.path:
    sys.path.insert(0, str(_TRAINING_DIR))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from textseg.engine.contract import (  # noqa: E402
    CONFIDENCE_OUTPUT,
    INPUT_NAME,
    KEY_PREFIX,
    LABELS_OUTPUT,
    ModelInfo,
)
from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from textseg_training import export as export_module  # noqa: E402
from textseg_training.cli import main as cli_main  # noqa: E402
from textseg_training.dataset_specs import CAMVID  # noqa: E402
from textseg_training.export import export_onnx  # noqa: E402
from textseg_training.model import SegModelConfig, build_model  # noqa: E402

CONTRACT_KEYS = {KEY_PREFIX + name for name in (
    "class_names", "palette", "network_input_size", "architecture", "dataset", "text_encoder",
    "training_stage", "eval_miou", "contract_version")}
N_PARITY_FRAMES = 20
SMALL = (64, 96)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def _model():
    torch.manual_seed(0)
    return build_model(SegModelConfig(backbone="stdc1", num_classes=11), deploy=True).eval()


def _info(size) -> ModelInfo:
    return ModelInfo(class_names=CAMVID.class_names, palette=CAMVID.palette,
                     network_input_size=size, architecture="stdc1-seg", dataset="camvid",
                     training_stage="random-init")


def _export(path, size=SMALL, **kwargs):
    model = _model()
    return export_onnx(model, _info(size), path, model.backbone.input_mean,
                       model.backbone.input_std, **kwargs)


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_parity_on_camvid_at_network_size(tmp_path, camvid_frames):
    frames = [rgb for _, rgb in camvid_frames(N_PARITY_FRAMES)]
    path = tmp_path / "camvid.onnx"
    report = _export(path, size=CAMVID.network_input_size, check_images=frames)
    assert report.path == path
    assert report.size_bytes == path.stat().st_size
    assert report.parity_pixels == N_PARITY_FRAMES * 360 * 480
    assert report.parity_agreement >= 0.999, report


def test_exported_file_passes_checker_and_carries_contract(tiny_model_path):
    proto = onnx.load(str(tiny_model_path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    assert CONTRACT_KEYS <= set(meta)
    info = ModelInfo.from_metadata(meta)
    assert info.class_names == CAMVID.class_names
    assert info.network_input_size == (96, 128)

    (image,) = proto.graph.input
    assert image.name == INPUT_NAME
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [0, 0, 0, 3]
    # dynamic batch (several cameras in one inference), height and width
    assert [d.dim_param for d in dims[:3]] == ["batch", "height", "width"]
    outputs = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert outputs == {LABELS_OUTPUT: onnx.TensorProto.UINT8,
                       CONFIDENCE_OUTPUT: onnx.TensorProto.UINT8}


def test_default_parity_check_and_no_confidence(tmp_path):
    path = tmp_path / "plain.onnx"
    report = _export(path)
    assert report.parity_pixels == 2 * SMALL[0] * SMALL[1]  # the two traced frames
    assert report.parity_agreement >= 0.999
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == [LABELS_OUTPUT]
    assert not OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"]).has_confidence


def test_write_is_atomic_and_world_readable(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    _export(path)
    assert path.read_bytes() != b"old"
    assert _leftovers(tmp_path, path.name) == []
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o777
    assert mode != 0o600
    assert mode == 0o666 & ~umask


def test_failed_export_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous model")

    def broken_checker(*args, **kwargs):
        raise onnx.checker.ValidationError("checker says no")

    monkeypatch.setattr(export_module.onnx.checker, "check_model", broken_checker)
    with pytest.raises(onnx.checker.ValidationError):
        _export(path)
    assert path.read_bytes() == b"previous model"
    assert _leftovers(tmp_path, path.name) == []


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous model")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        _export(path)
    assert path.read_bytes() == b"previous model"
    assert _leftovers(tmp_path, path.name) == []


def test_cli_export_writes_loadable_model(tmp_path, capsys):
    path = tmp_path / "sub" / "cli.onnx"
    code = cli_main(["export", "--init", "random", "--output", str(path),
                     "--input-size", f"{SMALL[1]}x{SMALL[0]}", "--confidence"])
    assert code == 0  # WxH like every textseg command
    assert "wrote" in capsys.readouterr().out
    backend = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"])
    assert backend.info.network_input_size == SMALL
    assert backend.info.dataset == "camvid"
    assert backend.info.training_stage == "random-init"
    assert backend.has_confidence
    result = backend.infer(np.zeros((30, 40, 3), np.uint8), want_confidence=True)
    assert result.labels.shape == (30, 40)


def test_cli_rejects_tiny_input_size(tmp_path, capsys):
    path = tmp_path / "small.onnx"
    code = cli_main(["export", "--init", "random", "--output", str(path),
                     "--input-size", "32x32"])
    assert code == 2
    assert "32x32 (width x height): each at least 64" in capsys.readouterr().err
    assert not path.exists()


def test_cli_input_size_is_width_x_height_and_the_old_form_is_deprecated(tmp_path, capsys):
    path = tmp_path / "old.onnx"
    assert cli_main(["export", "--init", "random", "--output", str(path),
                     "--input-size", str(SMALL[0]), str(SMALL[1])]) == 0
    err = capsys.readouterr().err
    assert "--input-size H W is deprecated" in err and f"{SMALL[1]}x{SMALL[0]}" in err
    assert OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"]
                              ).info.network_input_size == SMALL
    for bad in (["96"], ["96", "64", "3"], ["64x"]):
        assert cli_main(["export", "--init", "random", "--output", str(tmp_path / "b.onnx"),
                         "--input-size", *bad]) == 2
        assert "width x height" in capsys.readouterr().err
    assert not (tmp_path / "b.onnx").exists()


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"]])
def test_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 0
    assert "export" in capsys.readouterr().out


def test_cli_requires_command():
    with pytest.raises(SystemExit) as info:
        cli_main([])
    assert info.value.code == 2


def test_exported_confidence_is_the_largest_softmax_probability_without_a_softmax(tmp_path):
    """The confidence output is 1 / sum exp(l - max l): the same number as max softmax x 255,
    without ONNX Runtime's slow channel-axis Softmax (a third of the model's CPU time)."""
    path = tmp_path / "conf.onnx"
    _export(path, with_confidence=True)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Softmax" not in ops and {"Exp", "ReduceSum", "ReduceMax"} <= ops
    model = _model()
    wrapper = export_module.DeployWrapper(model, SMALL, model.backbone.input_mean,
                                          model.backbone.input_std, with_confidence=True).eval()
    image = np.random.default_rng(1).integers(0, 256, (1, 48, 80, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(image).float().permute(0, 3, 1, 2)
        x = torch.nn.functional.interpolate(x, size=SMALL, mode="bilinear", align_corners=False)
        logits = model((x - wrapper.mean) / wrapper.std)
        logits = torch.nn.functional.interpolate(logits, size=(48, 80), mode="bilinear",
                                                 align_corners=False)
        expected = (torch.softmax(logits, dim=1).amax(dim=1) * 255.0).round()
    result = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"]).infer(
        image[0], want_confidence=True)
    difference = np.abs(result.confidence.astype(int) - expected[0].numpy().astype(int))
    assert difference.max() <= 1  # rounding at the .5 boundary only


def test_static_same_padding_is_exact_and_leaves_no_pad_in_the_graph(tmp_path):
    """EfficientNet-Lite's run-time "same" padding, fixed for the network size: the same
    numbers as timm's Conv2dSame, and a graph without Pad or shape arithmetic around it."""
    torch.manual_seed(0)
    model = build_model(SegModelConfig(backbone="efficientnet_lite0", num_classes=11),
                        deploy=True).eval()
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        expected = model(x)
        frozen = export_module.freeze_same_padding(copy.deepcopy(model), SMALL)
        assert not any(type(m).__name__ == "Conv2dSame" for m in frozen.modules())
        assert any(isinstance(m, export_module.StaticSamePadConv) for m in frozen.modules())
        torch.testing.assert_close(frozen(x), expected, rtol=0, atol=1e-5)
    path = tmp_path / "lite0.onnx"
    report = export_onnx(model, _info(SMALL), path, model.backbone.input_mean,
                         model.backbone.input_std)
    assert report.parity_agreement == 1.0
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Pad" not in ops and ops.count("Conv") > 40
    # The caller's model is not changed by the export.
    assert any(type(m).__name__ == "Conv2dSame" for m in model.modules())


def test_the_batch_check_catches_a_graph_that_mixes_the_frames_of_a_batch():
    """A graph whose labels depend on the other frames of the batch (here: the batch-wide
    maximum of the red channel) must not pass the export's batch check."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["f", "axes"], ["m"], keepdims=1),  # over batch, channels
        helper.make_node("Sub", ["f", "f"], ["zero"]),
        helper.make_node("Add", ["zero", "m"], ["mixed"]),
        helper.make_node("ReduceMax", ["mixed", "channel"], ["top"], keepdims=0),
        helper.make_node("Cast", ["top"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes, "mixer",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "h", "w", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["batch", "h", "w"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [0, 3]),
                     helper.make_tensor("channel", TensorProto.INT64, [1], [3])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                             ir_version=9).SerializeToString()
    frames = [np.full((8, 8, 3), 10, np.uint8), np.full((8, 8, 3), 200, np.uint8)]
    with pytest.raises(RuntimeError, match="batch of 2 gets other labels"):
        export_module._check_batch_axis(data, frames)
    export_module._check_batch_axis(data, [frames[0], frames[0]])  # identical frames agree
