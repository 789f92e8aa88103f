"""Q/DQ int8 models on ONNX Runtime's CPU: activations carried as uint8 at load time
(textseg.engine.qdq_cpu). Checked: the rewrite is the one the onnx package would make, the
model computes the same numbers, and every convolution then runs in int8."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (a dev dependency) checks the rewrite")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from textseg.engine.qdq_cpu import uint8_activations  # noqa: E402


@pytest.fixture(scope="module")
def tiny_int8(tiny_model_path, camvid_dir, tmp_path_factory):
    from textseg.tools.quantize import quantize_model

    path = tmp_path_factory.mktemp("qdq_cpu") / "tiny_int8.onnx"
    quantize_model(tiny_model_path, path, camvid_dir / "val", frames=2)
    return path


def _onnx_rewrite(model):
    """The same conversion with the onnx package: every activation zero point int8 0 ->
    uint8 128."""
    inits = {i.name: i for i in model.graph.initializer}
    names = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" or (node.op_type == "DequantizeLinear"
                                                and node.input[0] not in inits):
            names.add(node.input[2])
    for name in names:
        shape = numpy_helper.to_array(inits[name]).shape
        inits[name].CopyFrom(numpy_helper.from_array(np.full(shape, 128, np.uint8), name))
    return model, len(names)


def test_the_wire_format_rewrite_is_what_onnx_would_write(tiny_int8):
    data = tiny_int8.read_bytes()
    rewritten, converted = uint8_activations(data)
    expected, count = _onnx_rewrite(onnx.load(str(tiny_int8)))
    assert converted == count > 0
    ours = onnx.load_from_string(rewritten)
    onnx.checker.check_model(ours, full_check=True)
    assert [n.SerializeToString() for n in ours.graph.node] == \
        [n.SerializeToString() for n in expected.graph.node]
    mine = {i.name: i for i in ours.graph.initializer}
    for tensor in expected.graph.initializer:
        assert mine[tensor.name].data_type == tensor.data_type, tensor.name
        np.testing.assert_array_equal(numpy_helper.to_array(mine[tensor.name]),
                                      numpy_helper.to_array(tensor))
    assert ours.metadata_props == expected.metadata_props


def test_the_rewritten_model_computes_the_same_numbers(tiny_int8, camvid_frames):
    """Reference semantics (ONNX Runtime with its optimiser off, so every Q/DQ op runs as
    written): uint8 + 128 is exactly int8."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    original = ort.InferenceSession(str(tiny_int8), options, providers=["CPUExecutionProvider"])
    rewritten = ort.InferenceSession(uint8_activations(tiny_int8.read_bytes())[0], options,
                                     providers=["CPUExecutionProvider"])
    for _, rgb in camvid_frames(2):
        batch = {"image": rgb[None]}
        for a, b in zip(original.run(None, batch), rewritten.run(None, batch), strict=True):
            np.testing.assert_array_equal(a, b)


def test_every_convolution_then_runs_in_int8(tiny_int8, tmp_path):
    def kernels(model):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]

    before = kernels(str(tiny_int8))
    after = kernels(uint8_activations(tiny_int8.read_bytes())[0])
    assert after.count("Conv") == 0 and after.count("QLinearConv") > 0
    assert after.count("QLinearConv") >= before.count("QLinearConv")
    assert after.count("DequantizeLinear") <= before.count("DequantizeLinear")


def test_the_backend_rewrites_int8_models_only(tiny_int8, tiny_model_path):
    backend = OnnxRuntimeBackend(tiny_int8, providers=["CPUExecutionProvider"],
                                 self_check="warn")  # a random model: see test_quantize
    assert backend.uint8_activations > 0
    assert "int8 activations as uint8" in backend.description
    assert OnnxRuntimeBackend(tiny_model_path).uint8_activations == 0
    assert uint8_activations(tiny_model_path.read_bytes()) == (tiny_model_path.read_bytes(), 0)


def test_models_it_is_not_sure_of_are_left_alone(tiny_int8):
    """An activation zero point that is not int8 0 (an asymmetric model) stops the rewrite."""
    model = onnx.load(str(tiny_int8))
    inits = {i.name: i for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    inits[q.input[2]].CopyFrom(numpy_helper.from_array(np.array(3, np.int8), q.input[2]))
    data = model.SerializeToString()
    assert uint8_activations(data) == (data, 0)


def test_textseg_profile_runs_the_int8_model_as_the_backend_does(tiny_int8):
    from textseg.tools.op_profile import profile_ops

    rows, _ = profile_ops(tiny_int8, 96, 128, runs=1, threads=1, warmup=1)
    ops = {row.op_type for row in rows}
    assert "QLinearConv" in ops and "Conv" not in ops, ops


def test_the_backend_parses_once_and_rewrites_as_the_two_steps_would(tiny_int8, monkeypatch):
    """One parse for the saturation check, the uint8 rewrite, the pruning, the contract and the
    precision; the bytes it runs are those of the rewrite followed by the pruning."""
    from textseg.engine import onnx_file
    from textseg.engine.graph_prune import output_removal, without_output
    from textseg.engine.onnx_file import read_onnx_model
    from textseg.engine.qdq_cpu import uint8_zero_point_edits

    parses = []
    parse = onnx_file._parse
    monkeypatch.setattr(onnx_file, "_parse", lambda *a: parses.append(a[1]) or parse(*a))
    backend = OnnxRuntimeBackend(tiny_int8, providers=["CPUExecutionProvider"],
                                 self_check="warn")
    assert parses == [str(tiny_int8)]
    monkeypatch.undo()
    rewritten, converted = uint8_activations(tiny_int8.read_bytes())
    labels_only, removed = without_output(rewritten, "confidence")
    assert (backend.uint8_activations, backend.pruned_nodes) == (converted, removed)
    assert backend._whole_model == rewritten
    assert [o.name for o in backend.session.get_outputs()] == ["labels"]
    # The backend's one rewrite of the parsed model is byte for byte the two steps in turn.
    model = read_onnx_model(tiny_int8)
    dropped, _ = output_removal(model, "confidence")
    assert model.edited(uint8_zero_point_edits(model), dropped) == labels_only
