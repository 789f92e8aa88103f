"""The protobuf reader that gives the TensorRT path an ONNX file's metadata and interface
without onnx/onnxruntime: checked against the onnx package on real exported models."""

from __future__ import annotations

import hashlib

import pytest

from textseg.engine.contract import INPUT_NAME, LABELS_OUTPUT, ContractError, ModelInfo
from textseg.engine.onnx_file import describe_model, read_onnx_model


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
    summary = read_onnx_model(tiny_model_path)
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
        read_onnx_model(tmp_path / "absent.onnx")


@pytest.mark.parametrize("content", [b"", b"this is not a network\n", b"\x08",
                                     bytes(range(256)) * 4, b"\x0a\xff\xff\xff\xff\x0f"])
def test_non_onnx_bytes_are_refused(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ContractError, match="is not an ONNX model"):
        read_onnx_model(path)


def test_truncated_model_is_refused(tmp_path, tiny_model_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_model_path.read_bytes()[:50_000])
    with pytest.raises(ContractError, match="is not an ONNX model"):
        read_onnx_model(path)


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
        describe_model(read_onnx_model(path))


# --- the reader's named field numbers and data types, against onnx's own descriptors --------

FIELD_NAMESPACES = ("ModelProto", "OperatorSetIdProto", "StringStringEntryProto", "GraphProto",
                    "NodeProto", "AttributeProto", "TensorProto", "ValueInfoProto", "TypeProto",
                    "TypeProto.Tensor", "TensorShapeProto", "TensorShapeProto.Dimension")
# Constants named for what the one-letter AttributeProto fields hold.
FIELD_ALIASES = {("AttributeProto", "INT"): "i", ("AttributeProto", "STRING"): "s",
                 ("AttributeProto", "TENSOR"): "t"}


def _constants(namespace) -> dict[str, int]:
    return {name: value for name, value in vars(namespace).items()
            if name.isupper() and isinstance(value, int)}


@pytest.mark.parametrize("message", FIELD_NAMESPACES)
def test_field_numbers_are_onnx_protos(onnx, message):
    from textseg.engine import onnx_file

    ours, theirs = onnx_file, onnx
    for part in message.split("."):
        ours, theirs = getattr(ours, part), getattr(theirs, part)
    constants = _constants(ours)
    assert constants, message
    for name, number in constants.items():
        proto_name = FIELD_ALIASES.get((message, name), name.lower())
        assert theirs.DESCRIPTOR.fields_by_name[proto_name].number == number, (message, name)


def test_every_field_namespace_is_checked():
    from textseg.engine import onnx_file

    named = {name for name, value in vars(onnx_file).items()
             if isinstance(value, type) and name.endswith("Proto")}
    assert named == {m.split(".")[0] for m in FIELD_NAMESPACES}


def test_data_types_are_onnxs(onnx):
    from onnx.helper import tensor_dtype_to_np_dtype

    from textseg.engine.onnx_file import DTYPE_NAMES, DataType

    for name, number in _constants(DataType).items():
        assert getattr(onnx.TensorProto, name) == number, name
    for number, dtype in DTYPE_NAMES.items():
        if dtype != "bfloat16":  # numpy has no bfloat16 (onnx maps it to its own type)
            assert tensor_dtype_to_np_dtype(number).name == dtype


def test_wire_types_are_protobufs():
    wire_format = pytest.importorskip("google.protobuf.internal.wire_format")
    from textseg.engine.onnx_file import WireType

    assert (WireType.VARINT, WireType.I64, WireType.LEN, WireType.I32) == (
        wire_format.WIRETYPE_VARINT, wire_format.WIRETYPE_FIXED64,
        wire_format.WIRETYPE_LENGTH_DELIMITED, wire_format.WIRETYPE_FIXED32)


# --- the parsed model ------------------------------------------------------------------------

def test_the_parsed_graph_is_what_onnx_reads(tiny_model_path, onnx):
    from onnx import numpy_helper

    model = read_onnx_model(tiny_model_path)
    proto = onnx.load(str(tiny_model_path))
    assert [(n.op_type, n.inputs, n.outputs, n.name) for n in model.nodes] == [
        (n.op_type, list(n.input), list(n.output), n.name) for n in proto.graph.node]
    assert model.opset == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert list(model.initializers) == [t.name for t in proto.graph.initializer]
    for tensor in proto.graph.initializer:
        ours = model.initializers[tensor.name]
        array = numpy_helper.to_array(tensor)
        assert ours.dims == tuple(tensor.dims) == array.shape
        assert ours.dtype == array.dtype.name
        if tensor.raw_data:
            assert bytes(ours.raw) == tensor.raw_data
    assert [i.name for i in model.interface_inputs] == [INPUT_NAME]
    assert model.size == len(tiny_model_path.read_bytes())


def test_bytes_and_file_read_alike(tiny_model_path):
    data = tiny_model_path.read_bytes()
    from_bytes, from_file = read_onnx_model(data), read_onnx_model(tiny_model_path)
    assert from_bytes.path is None and from_file.path == tiny_model_path
    assert from_bytes.sha256 == from_file.sha256 == hashlib.sha256(data).hexdigest()
    assert [n.op_type for n in from_bytes.nodes] == [n.op_type for n in from_file.nodes]


def test_a_model_without_edits_is_written_as_it_was_read(tiny_model_path):
    model = read_onnx_model(tiny_model_path)
    assert model.edited() == tiny_model_path.read_bytes()


def test_an_edit_replaces_or_drops_graph_fields_only(tiny_model_path, onnx):
    from textseg.engine.onnx_file import GraphProto

    model = read_onnx_model(tiny_model_path)
    (first, _), (second, _) = model.graph_entries(GraphProto.NODE)[:2]
    renamed = onnx.helper.make_node("Identity", ["x"], ["y"], name="renamed")
    edited = onnx.load_from_string(model.edited({first: renamed.SerializeToString()},
                                                drop={second}))
    original = onnx.load(str(tiny_model_path))
    assert edited.graph.node[0].name == "renamed"
    assert [n.name for n in edited.graph.node[1:]] == [n.name for n in original.graph.node[2:]]
    assert edited.metadata_props == original.metadata_props
    assert edited.graph.initializer == original.graph.initializer


def test_one_contract_check_for_the_file_and_onnx_runtime(tmp_path, onnx):
    """describe_model and the ONNX Runtime backend refuse an off-contract model with the same
    words (textseg.engine.contract checks both)."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

    image = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [1, "h", "w", 3])
    labels = helper.make_tensor_value_info(LABELS_OUTPUT, TensorProto.FLOAT, [1, "h", "w", 3])
    cast = helper.make_node("Cast", [INPUT_NAME], [LABELS_OUTPUT], to=TensorProto.FLOAT)
    model = helper.make_model(helper.make_graph([cast], "g", [image], [labels]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in _metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "float_labels.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ContractError) as described:
        describe_model(path)
    with pytest.raises(ContractError) as opened:
        OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"])
    assert str(described.value) == str(opened.value)
    assert "uint8 [N, H, W] output 'labels'" in str(described.value)
