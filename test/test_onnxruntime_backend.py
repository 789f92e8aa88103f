"""OnnxRuntimeBackend on a tiny exported model, and the errors a bad file must produce."""

from __future__ import annotations

import numpy as np
import pytest

from textseg.engine import BackendOptions, load_backend
from textseg.engine.contract import INPUT_NAME, LABELS_OUTPUT, ContractError, ModelInfo
from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    return OnnxRuntimeBackend(tiny_model_path, threads=2, providers=CPU)


@pytest.fixture
def onnx():
    """The onnx package builds the hand-made graphs below (a runtime install may lack it)."""
    return pytest.importorskip("onnx", reason="onnx not installed (runtime-only environment)")


def _identity_model(path, input_type=None, output_type=None,
                    metadata: dict[str, str] | None = None):
    """A trivial (contract-shaped where the types allow) ONNX graph, optionally with metadata:
    labels = image[..., 0]."""
    import onnx
    from onnx import TensorProto, helper

    input_type = TensorProto.UINT8 if input_type is None else input_type
    output_type = TensorProto.UINT8 if output_type is None else output_type
    inp = helper.make_tensor_value_info(INPUT_NAME, input_type, [1, "h", "w", 3])
    out = helper.make_tensor_value_info(LABELS_OUTPUT, output_type, [1, "h", "w"])
    index = helper.make_tensor("index", TensorProto.INT64, [], [0])
    node = helper.make_node("Gather", [INPUT_NAME, "index"], [LABELS_OUTPUT], axis=3)
    graph = helper.make_graph([node], "g", [inp], [out], initializer=[index])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _valid_metadata() -> dict[str, str]:
    return ModelInfo(class_names=("a", "b"), palette=((0, 0, 0), (255, 255, 255)),
                     network_input_size=(8, 8)).to_metadata()


def test_metadata_matches_export(backend):
    from textseg_training.dataset_specs import CAMVID

    info = backend.info
    assert info.class_names == CAMVID.class_names
    assert info.palette == CAMVID.palette
    assert info.network_input_size == (96, 128)
    assert info.architecture == "stdc1-seg"
    assert info.dataset == "camvid"
    assert info.training_stage == "random-init"
    assert info.num_classes == 11
    assert backend.has_confidence
    assert backend.name == "onnxruntime"
    assert backend.providers == CPU


def test_infer_camvid_frame(backend, camvid_frames):
    (_, rgb), = camvid_frames(1)
    assert rgb.shape == (360, 480, 3)
    result = backend.infer(rgb, want_confidence=True)
    assert result.labels.dtype == np.uint8
    assert result.labels.shape == (360, 480)
    assert result.labels.max() < backend.info.num_classes
    assert result.confidence is not None
    assert result.confidence.dtype == np.uint8
    assert result.confidence.shape == (360, 480)
    # max softmax over 11 classes is at least 1/11
    assert result.confidence.min() >= int(255 / 11) - 1


def test_confidence_only_when_asked(backend):
    rgb = np.zeros((20, 30, 3), np.uint8)
    assert backend.infer(rgb).confidence is None


@pytest.mark.parametrize("height, width", [(37, 53), (1, 1), (96, 128), (200, 64), (64, 301)])
def test_infer_any_size(backend, height, width):
    rgb = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), np.uint8)
    result = backend.infer(rgb, want_confidence=True)
    assert result.labels.shape == (height, width)
    assert result.confidence.shape == (height, width)
    assert result.labels.max() < backend.info.num_classes


def test_infer_non_contiguous_input(backend):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), np.uint8)
    flipped = rgb[:, ::-1]
    np.testing.assert_array_equal(backend.infer(flipped).labels,
                                  backend.infer(np.ascontiguousarray(flipped)).labels)


@pytest.mark.parametrize("bad, error", [
    (np.zeros((10, 10, 3), np.float32), TypeError),
    (np.zeros((10, 10, 3), np.uint16), TypeError),
    ([[[0, 0, 0]]], TypeError),
    (np.zeros((10, 10), np.uint8), ValueError),
    (np.zeros((10, 10, 4), np.uint8), ValueError),
    (np.zeros((1, 10, 10, 3), np.uint8), ValueError),
    (np.zeros((0, 10, 3), np.uint8), ValueError),
])
def test_infer_rejects_bad_input(backend, bad, error):
    with pytest.raises(error):
        backend.infer(bad)


def test_load_backend(tiny_model_path):
    loaded = load_backend(tiny_model_path, BackendOptions(backend="onnxruntime", threads=1))
    assert isinstance(loaded, OnnxRuntimeBackend)
    assert loaded.info.num_classes == 11


def test_load_backend_passes_the_options_that_apply_to_onnx_runtime(tiny_model_path):
    lines: list[str] = []
    loaded = load_backend(tiny_model_path, BackendOptions(
        backend="onnxruntime", threads=1, self_check="warn", report=lines.append,
        precision="fp32", max_batch=4))  # TensorRT's options: not for ONNX Runtime
    assert loaded.self_check_note.startswith("self-check passed")
    assert loaded.max_batch > 1  # what the model allows, not max_batch


def test_what_the_node_asks_of_the_backend(tiny_model_path):
    """The SegmentationBackend members the node relies on: a batch bound, whether batching
    pays, and confidence prepared before the first frame wants it."""
    fresh = OnnxRuntimeBackend(tiny_model_path, threads=1, providers=CPU)
    assert fresh.batching_pays is False and fresh.max_batch > 1
    assert fresh._whole_session is None  # labels-only graph until confidence is wanted
    fresh.prepare_confidence()
    assert fresh._whole_session is not None
    frame = np.zeros((48, 64, 3), np.uint8)
    assert fresh.infer(frame, want_confidence=True).confidence.shape == (48, 64)
    fresh.close()


@pytest.mark.parametrize("requested", ["auto", "onnxruntime"])
def test_load_backend_parses_the_model_once(tiny_model_path, monkeypatch, requested):
    """The backend choice (auto reads the quantization target) and the backend share one
    parse of the file."""
    from textseg.engine import onnx_file, tensorrt_problem

    if requested == "auto" and tensorrt_problem() is None:
        pytest.skip("TensorRT and a GPU are usable here: auto would build an engine")
    parses = []
    parse = onnx_file._parse
    monkeypatch.setattr(onnx_file, "_parse", lambda *a: parses.append(a[1]) or parse(*a))
    loaded = load_backend(tiny_model_path, BackendOptions(backend=requested, threads=1))
    assert parses == [str(tiny_model_path)]
    assert loaded.name == "onnxruntime"


def test_load_backend_unknown_name(tiny_model_path):
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        load_backend(tiny_model_path, BackendOptions(backend="tensorflow"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxRuntimeBackend(tmp_path / "absent.onnx")
    with pytest.raises(FileNotFoundError):
        load_backend(tmp_path / "absent.onnx")


def test_text_file_is_not_a_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a network\n")
    with pytest.raises(ContractError, match="not a loadable ONNX model"):
        OnnxRuntimeBackend(path, providers=CPU)


def test_onnx_without_metadata(tmp_path, onnx):
    path = _identity_model(tmp_path / "plain.onnx")
    with pytest.raises(ContractError, match="not a textseg model"):
        OnnxRuntimeBackend(path, providers=CPU)


def test_contract_shaped_model_with_metadata_loads(tmp_path, onnx):
    path = _identity_model(tmp_path / "ok.onnx", metadata=_valid_metadata())
    backend = OnnxRuntimeBackend(path, providers=CPU)
    assert not backend.has_confidence
    rgb = np.random.default_rng(1).integers(0, 2, (4, 5, 3), np.uint8)
    result = backend.infer(rgb, want_confidence=True)
    np.testing.assert_array_equal(result.labels, rgb[..., 0])
    assert result.confidence is None


def test_float_input_rejected(tmp_path, onnx):
    float32 = onnx.TensorProto.FLOAT
    path = _identity_model(tmp_path / "float_in.onnx", input_type=float32,
                           output_type=float32, metadata=_valid_metadata())
    with pytest.raises(ContractError, match="uint8 input"):
        OnnxRuntimeBackend(path, providers=CPU)


def test_float_labels_rejected(tmp_path, onnx):
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [1, "h", "w", 3])
    out = helper.make_tensor_value_info(LABELS_OUTPUT, TensorProto.FLOAT, [1, "h", "w", 3])
    node = helper.make_node("Cast", [INPUT_NAME], [LABELS_OUTPUT], to=TensorProto.FLOAT)
    model = helper.make_model(helper.make_graph([node], "g", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in _valid_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "float_out.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ContractError, match="output 'labels'"):
        OnnxRuntimeBackend(path, providers=CPU)


@pytest.mark.parametrize("spin_wait, expected", [(False, "0"), (True, "1")])
def test_spin_wait_sets_the_thread_pool_policy(tiny_model_path, spin_wait, expected):
    backend = OnnxRuntimeBackend(tiny_model_path, threads=1, providers=CPU, spin_wait=spin_wait)
    options = backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    assert backend.description.startswith("onnxruntime ")


def test_op_profile_names_the_kernels_that_ran(tiny_model_path):
    """`textseg profile`: ONNX Runtime's profiler, per op type as run, shares summing to 1."""
    from textseg.tools.op_profile import op_table, profile_ops

    rows, wall_ms = profile_ops(tiny_model_path, 120, 160, runs=2, threads=1, warmup=1)
    assert wall_ms > 0 and rows
    assert abs(sum(r.share for r in rows) - 1.0) < 1e-6
    assert any(r.op_type in ("Conv", "FusedConv") for r in rows)
    assert all(r.calls_per_run > 0 for r in rows)
    assert "| op (as run) |" in op_table(rows, wall_ms, "tiny")
    with pytest.raises(ValueError, match="runs must be"):
        profile_ops(tiny_model_path, 120, 160, runs=0)


def test_a_batch_gives_each_frame_its_own_labels(backend):
    frames = [np.random.default_rng(i).integers(0, 256, (60, 80, 3), np.uint8)
              for i in range(3)]
    assert backend.max_batch > 1 and not backend.batching_pays
    together = backend.infer_batch(frames, want_confidence=True)
    for frame, result in zip(frames, together, strict=True):
        alone = backend.infer(frame, want_confidence=True)
        np.testing.assert_array_equal(result.labels, alone.labels)
        np.testing.assert_array_equal(result.confidence, alone.confidence)
    assert backend.infer_batch(frames[:1])[0].labels.shape == (60, 80)
    with pytest.raises(ValueError, match="one size"):
        backend.infer_batch([frames[0], frames[1][:40]])


def test_a_model_with_a_fixed_batch_takes_one_frame_per_inference(tiny_model_path, tmp_path,
                                                                  onnx):
    model = onnx.load(str(tiny_model_path))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    fixed = OnnxRuntimeBackend(path)
    assert fixed.max_batch == 1
    frame = np.zeros((48, 64, 3), np.uint8)
    assert len(fixed.infer_batch([frame])) == 1
    with pytest.raises(ValueError, match="at most 1"):
        fixed.infer_batch([frame, frame])
