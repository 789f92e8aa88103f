"""The protobuf reader that gives the TensorRT path an ONNX file's metadata and interface
without onnx/onnxruntime: checked against the onnx package on real exported models."""

from __future__ import annotations

import hashlib

import pytest

from textseg.engine.contract import INPUT_NAME, LABELS_OUTPUT, ContractError, ModelInfo
from textseg.engine.onnx_file import (
    check_contract_interface,
    describe_model,
    read_onnx_summary,
)


@pytest.fixture
def onnx():
    return pytest.importorskip("onnx", reason="onnx not installed (runtime-only environment)")


def _graph_model(onnx, path, input_type, labels_type, metadata=None, extra_output=None,
                 input_shape=(1, "h", "w", 3)):
    from onnx import helper

    inp = helper.make_tensor_value_info(INPUT_NAME, input_type, list(input_shape))
    outputs = [helper.make_tensor_value_info(LABELS_OUTPUT, labels_type, [1, "h", "w"])]
    nodes = [helper.make_node("ReduceMax", [INPUT_NAME], [LABELS_OUTPUT], axes=[3],
                              keepdims=0)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, labels_type, [1, "h", "w"]))
        nodes.append(helper.make_node("ReduceMin", [INPUT_NAME], [extra_output], axes=[3],
                                      keepdims=0))
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], outputs),
                              opset_imports=[helper.make_opsetid("", 13)])
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _metadata() -> dict[str, str]:
    return ModelInfo(class_names=("a", "b"), palette=((0, 0, 0), (9, 9, 9)),
                     network_input_size=(8, 8)).to_metadata()


def test_reads_what_the_onnx_package_reads(tiny_model_path, onnx):
    summary = read_onnx_summary(tiny_model_path)
    model = onnx.load(str(tiny_model_path))
    assert summary.metadata == {p.key: p.value for p in model.metadata_props}
    assert [i.name for i in summary.inputs] == [i.name for i in model.graph.input]
    assert [o.name for o in summary.outputs] == [o.name for o in model.graph.output]
    image = summary.inputs[0]
    assert image.dtype == "uint8"
    assert image.shape[0] == "batch" and image.shape[3] == 3  # exported with a dynamic batch
    assert describe_model(tiny_model_path).dynamic_batch
    assert all(isinstance(d, str) for d in image.shape[1:3])  # dynamic H and W
    assert {o.name: o.dtype for o in summary.outputs} == {"labels": "uint8",
                                                          "confidence": "uint8"}
    data = tiny_model_path.read_bytes()
    assert summary.sha256 == hashlib.sha256(data).hexdigest()
    assert summary.size == len(data)


def test_describe_model_matches_contract(tiny_model_path):
    model = describe_model(tiny_model_path)
    assert model.info.num_classes == 11
    assert model.info.network_input_size == (96, 128)
    assert model.has_confidence
    assert model.path == tiny_model_path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        read_onnx_summary(tmp_path / "absent.onnx")


@pytest.mark.parametrize("content", [b"", b"this is not a network\n", b"\x08",
                                     bytes(range(256)) * 4, b"\x0a\xff\xff\xff\xff\x0f"])
def test_non_onnx_bytes_are_refused(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ContractError, match="is not an ONNX model"):
        read_onnx_summary(path)


def test_truncated_model_is_refused(tmp_path, tiny_model_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_model_path.read_bytes()[:50_000])
    with pytest.raises(ContractError, match="is not an ONNX model"):
        read_onnx_summary(path)


def test_onnx_without_metadata_is_not_a_textseg_model(tmp_path, onnx):
    path = _graph_model(onnx, tmp_path / "plain.onnx", onnx.TensorProto.UINT8,
                        onnx.TensorProto.UINT8)
    with pytest.raises(ContractError, match="not a textseg model"):
        describe_model(path)


def test_contract_shaped_graph(tmp_path, onnx):
    path = _graph_model(onnx, tmp_path / "ok.onnx", onnx.TensorProto.UINT8,
                        onnx.TensorProto.UINT8, _metadata(), extra_output="confidence")
    model = describe_model(path)
    assert model.has_confidence
    assert model.info.class_names == ("a", "b")
    assert not model.dynamic_batch  # this graph fixes its batch at 1, as older exports did


@pytest.mark.parametrize("input_type, labels_type, shape, message", [
    ("FLOAT", "UINT8", (1, "h", "w", 3), "uint8 input 'image'"),
    ("UINT8", "INT64", (1, "h", "w", 3), "uint8 \\[N, H, W\\] output 'labels'"),
    ("UINT8", "UINT8", (1, 3, "h", "w"), "must be \\[N, H, W, 3\\]"),
    ("UINT8", "UINT8", (2, "h", "w", 3), "N dynamic or 1"),
])
def test_interface_violations_name_the_problem(tmp_path, onnx, input_type, labels_type,
                                               shape, message):
    path = _graph_model(onnx, tmp_path / "m.onnx", getattr(onnx.TensorProto, input_type),
                        getattr(onnx.TensorProto, labels_type), _metadata(),
                        input_shape=shape)
    with pytest.raises(ContractError, match=message):
        check_contract_interface(read_onnx_summary(path))
