"""TensorRT's ONNX parser rules (tensorrt_rules) on real exports and on small graphs that break
exactly one rule each. TensorRT itself cannot run here; these encode its documentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textseg.engine.contract import ContractError
from textseg.engine.tensorrt_rules import check_tensorrt_rules, require_tensorrt_rules

onnx = pytest.importorskip("onnx", reason="onnx not installed (runtime-only environment)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _rules(problems) -> set[str]:
    return {p.rule for p in problems}


@pytest.mark.parametrize("confidence", [True, False])
def test_every_export_variant_passes(tmp_path, confidence):
    pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
    from textseg_training.export import export_random

    for backbone in ("stdc1", "efficientnet_lite0"):
        path = tmp_path / f"{backbone}.onnx"
        export_random(path, backbone=backbone, confidence=confidence, input_size=(96, 128))
        assert check_tensorrt_rules(path) == [], backbone  # export_onnx checks it too


@pytest.mark.parametrize("path", sorted((ROOT / "models").glob("*.onnx")), ids=lambda p: p.name)
def test_every_shipped_model_passes_unless_it_is_the_cpu_only_form(path):
    problems = check_tensorrt_rules(path)
    if path.name.endswith("_int8_cpu.onnx"):  # textseg quantize --target cpu: refused, plainly
        assert problems and "quantized for onnxruntime-cpu only" in str(problems[0])
    else:
        assert problems == []


def test_the_old_export_graph_is_refused_with_both_reasons(tmp_path):
    """The graph before the fix: Transpose on the uint8 image, uint8 labels cast from ArgMax."""
    torch = pytest.importorskip("torch")

    class OldWrapper(torch.nn.Module):
        def forward(self, image):
            x = image.permute(0, 3, 1, 2).float()  # uint8 Transpose first
            x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear")
            return x.argmax(dim=1).to(torch.uint8)  # int64 -> uint8

    path = tmp_path / "old.onnx"
    sample = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    torch.onnx.export(OldWrapper(), (sample,), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["labels"],
                      dynamic_axes={"image": {1: "h", 2: "w"}, "labels": {1: "h", 2: "w"}})
    problems = check_tensorrt_rules(path)
    text = "\n".join(map(str, problems))
    assert _rules(problems) == {"uint8", "cast"}, text
    assert "reads the uint8 input 'image' directly" in text
    assert "cast from int64" in text
    with pytest.raises(ContractError, match="breaks TensorRT's ONNX parser rules"):
        require_tensorrt_rules(path)


def _graph(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


def _image_to_labels(extra_nodes=(), extra_inits=(), middle="x", opset=17):
    """image -> Cast -> Resize(constant sizes) -> [extra] -> ArgMax -> Cast float -> Cast u8."""
    sizes = numpy_helper.from_array(np.array([1, 3, 8, 8], np.int64), "sizes")
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Resize", ["t", "", "", "sizes"], ["x"], mode="linear"),
        *extra_nodes,
        helper.make_node("ArgMax", [middle], ["a"], axis=1, keepdims=0),
        helper.make_node("Cast", ["a"], ["af"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["af"], ["labels"], to=TensorProto.UINT8),
    ]
    return _graph(nodes, [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                        [1, "h", "w", 3])],
                  [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 8, 8])],
                  [sizes, *extra_inits], opset)


def test_a_minimal_contract_graph_passes():
    assert check_tensorrt_rules(_image_to_labels()) == []


def test_qdq_must_be_symmetric_int8():
    def qdq(zero_dtype, zero_value):
        inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
                 numpy_helper.from_array(np.array(zero_value, zero_dtype), "zero")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"])]
        return check_tensorrt_rules(_image_to_labels(nodes, inits, middle="dq"))

    assert qdq(np.int8, 0) == []
    uint8 = qdq(np.uint8, 128)  # ONNX Runtime's default activation quantization
    assert "qdq" in _rules(uint8) and "uint8" in _rules(uint8)
    assert any("not 0" in str(p) for p in qdq(np.int8, 3))


def test_unsupported_ops_opsets_and_dynamic_network_sizes_are_named():
    nonzero = helper.make_node("NonZero", ["x"], ["nz"])
    problems = check_tensorrt_rules(_image_to_labels([nonzero]))
    assert any(p.rule == "ops" and "NonZero" in p.node for p in problems)
    assert "opset" in _rules(check_tensorrt_rules(_image_to_labels(opset=21)))
    dynamic = _graph(
        [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Shape", ["f"], ["s"]),
         helper.make_node("Resize", ["f", "", "", "s"], ["x"], mode="linear"),
         helper.make_node("ArgMax", ["x"], ["a"], axis=3, keepdims=0),
         helper.make_node("Cast", ["a"], ["af"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["af"], ["labels"], to=TensorProto.UINT8)],
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "h", "w", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, "h", "w"])])
    assert "static" in _rules(check_tensorrt_rules(dynamic))
