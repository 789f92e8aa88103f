"""A model that checks its own numbers when it loads (textseg.engine.self_check)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textseg.engine import BackendOptions, default_model_path, load_backend
from textseg.engine.contract import ContractError
from textseg.engine.onnx_file import read_onnx_model, with_metadata
from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend
from textseg.engine.self_check import (
    SELF_CHECK_KEY,
    THRESHOLDS,
    SelfCheckData,
    SelfCheckFailed,
    class_agreement,
    classes_that_lost,
    int8_advice,
    interior,
    read_self_check,
    run_self_check,
)
from textseg.engine.tensorrt_backend import TensorRTBackend

MODELS = default_model_path().parent
SHIPPED = ("textseg_default.onnx", "textseg_default_int8.onnx", "textseg_default_int8_cpu.onnx")


def _tampered(source, output):
    """`source` with its class-score convolution's output channels reversed (weights and
    bias), its metadata (and so its stored self-check) untouched: a model whose numbers
    changed without any error."""
    onnx = pytest.importorskip("onnx", reason="the onnx package is needed to edit a model")
    from onnx import numpy_helper

    proto = onnx.load(str(source))
    inits = {t.name: t for t in proto.graph.initializer}
    classes = len(json.loads(read_onnx_model(source).metadata["textseg.class_names"]))
    conv = [n for n in proto.graph.node if n.op_type == "Conv" and n.input[1] in inits
            and numpy_helper.to_array(inits[n.input[1]]).shape[0] == classes][-1]
    for name in conv.input[1:]:
        values = numpy_helper.to_array(inits[name])[::-1].copy()
        inits[name].CopyFrom(numpy_helper.from_array(values, name))
    output.write_bytes(proto.SerializeToString())
    return output


def test_metadata_round_trip_is_exact():
    rng = np.random.default_rng(0)
    frames = tuple(rng.integers(0, 256, (12, 16, 3), np.uint8) for _ in range(2))
    labels = tuple(rng.integers(0, 11, (12, 16), np.uint8) for _ in range(2))
    back = SelfCheckData.from_metadata(SelfCheckData(frames, labels, "ref").to_metadata())
    assert back.reference == "ref"
    for a, b in zip(frames + labels, back.frames + back.labels, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("text", ["{", '{"frames": ["!!"], "labels": ["!!"]}',
                                  '{"frames": [], "labels": []}'])
def test_malformed_self_check_is_a_clear_error(text):
    with pytest.raises(ContractError, match="self_check"):
        read_self_check({SELF_CHECK_KEY: text}, "m.onnx")


def test_interior_excludes_label_boundaries():
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 10:] = 1
    mask = interior(labels)
    assert not mask[:, 8:12].any() and mask[:, :8].all() and mask[:, 12:].all()


def test_an_exported_model_carries_and_passes_its_self_check(tiny_model_path):
    stored = read_self_check(read_onnx_model(tiny_model_path).metadata)
    assert stored is not None and 1 <= len(stored.frames) <= 3  # at most CHECK_FRAMES
    backend = OnnxRuntimeBackend(tiny_model_path)
    assert backend.self_check.passed and backend.self_check.agreement == 1.0
    assert backend.self_check.precision == "fp32"
    assert "self-check passed" in backend.self_check_note


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_pass_their_self_check_here(name):
    backend = load_backend(MODELS / name, BackendOptions(backend="onnxruntime"))
    assert backend.self_check is not None, f"{name} carries no self-check"
    assert backend.self_check.passed, backend.self_check_note
    precision = "fp32" if name == "textseg_default.onnx" else "int8"
    assert backend.self_check.precision == precision


def test_a_tampered_model_fails_its_self_check(tiny_model_path, tmp_path):
    tampered = _tampered(tiny_model_path, tmp_path / "tampered.onnx")
    with pytest.raises(SelfCheckFailed) as failed:
        OnnxRuntimeBackend(tampered)
    message = str(failed.value)
    assert str(tampered) in message and "FAILED" in message and "agree" in message
    assert "self_check: warn" in message
    lines: list[str] = []
    warned = OnnxRuntimeBackend(tampered, self_check="warn", report=lines.append)
    assert not warned.self_check.passed and lines[0].startswith("WARNING")
    assert warned.infer(np.zeros((40, 60, 3), np.uint8)).labels.shape == (40, 60)
    skipped = OnnxRuntimeBackend(tampered, self_check="off")
    assert skipped.self_check is None and skipped.self_check_note == "off"


def test_a_model_from_before_the_self_check_opens_and_says_so(tiny_model_path, tmp_path):
    onnx = pytest.importorskip("onnx", reason="the onnx package is needed")
    proto = onnx.load(str(tiny_model_path))
    kept = [p for p in proto.metadata_props if p.key != SELF_CHECK_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    old.write_bytes(proto.SerializeToString())
    assert "none stored" in OnnxRuntimeBackend(old).self_check_note


def test_quantized_file_carries_the_fp32_reference(tiny_model_path, tmp_path, camvid_dir):
    pytest.importorskip("onnx", reason="the onnx package is needed")
    from textseg.tools.quantize import quantize_model

    output = quantize_model(tiny_model_path, tmp_path / "q.onnx", camvid_dir / "train",
                            frames=4, target="cpu", self_check="warn").path
    metadata = read_onnx_model(output).metadata
    assert metadata[SELF_CHECK_KEY] == read_onnx_model(tiny_model_path).metadata[
        SELF_CHECK_KEY]
    backend = OnnxRuntimeBackend(output, self_check="warn")  # a random model's margins
    assert backend.self_check.precision == "int8"
    assert backend.self_check.threshold == THRESHOLDS["int8"]


def test_class_agreement_names_the_classes_that_lost():
    reference = np.zeros((20, 20), np.uint8)
    reference[:, 10:] = 1
    labels = np.zeros_like(reference)  # class 1 lost to class 0
    data = SelfCheckData((np.zeros((20, 20, 3), np.uint8),), (reference,), "fp32")
    car, road = class_agreement([labels], data, ["road", "car"])
    # Interior pixels only: 8 columns of each class (the 4 around the boundary do not count).
    assert (car.name, car.pixels, car.kept, car.iou, car.labelled) == ("car", 160, 0, 0, 0)
    assert (road.name, road.pixels, road.kept, road.iou, road.labelled) == (
        "road", 160, 1, 0.5, 320)
    assert car.describe("int8") == ("car: 0.0 % of its 160 reference pixels kept (IoU 0.0 %, "
                                    "0 labelled by int8)")


def test_classes_that_lost_rank_by_the_reference_pixels_they_lost():
    """An outsider's report: the failure listed classes absent from the fp32 labels first
    ("a IoU 0.0 % (reference 0 pixels, ...)") and missed the class that lost 35 % of its
    pixels. Classes of the reference rank by the share they kept; one the model invents is
    listed apart, worded as such."""
    reference = np.full((40, 40), 2, np.uint8)
    reference[:, :20] = 1  # class 1 ("road") and 2 ("car"), 20 columns each
    labels = reference.copy()
    labels[:, 20:27] = 0  # 7 of car's 20 columns (35 %) become class 0, absent from fp32
    data = SelfCheckData((np.zeros((40, 40, 3), np.uint8),), (reference,), "fp32")
    rows = class_agreement([labels], data, ["sky", "road", "car"])
    lost, invented = classes_that_lost(rows, 3)
    assert [row.name for row in lost] == ["car"]  # road kept everything
    assert lost[0].kept == 13 / 18  # interior columns 22-39 of car, 22-26 lost
    assert [row.name for row in invented] == ["sky"]
    assert invented[0].describe("int8") == (
        f"sky: 0 reference pixels, {invented[0].labelled} labelled by int8")
    assert rows[0].name == "car"  # not the invented class first


def test_int8_advice_follows_what_the_file_recorded_where_it_was_made():
    """Issue 31: an int8 file refused by the node is blamed on the machine only when it
    passed its self-check where it was made; one kept after failing there lost accuracy."""
    def metadata(record):
        quantization = {"format": "QDQ"}
        if record is not None:
            quantization["self_check_where_made"] = {
                "passed": record, "agreement": 0.757, "cpu": "Xeon (x86_64; VNNI, no bf16)",
                "backend": "onnxruntime 1.32.0 CPUExecutionProvider"}
        return {"quantization": json.dumps(quantization)}

    failed = int8_advice(metadata(False))
    assert "already failed this check where `textseg quantize` made it (75.70 % on Xeon" \
        in failed
    assert "int8 lost accuracy" in failed and "this machine is not the cause" in failed
    assert "--method" in failed and "fp32 model" in failed and "on this version" not in failed
    passed = int8_advice(metadata(True))
    assert "passed where `textseg quantize` made it" in passed
    assert "computes the int8 file differently" in passed
    unknown = int8_advice(metadata(None))
    assert "does not record" in unknown and "textseg quantize" in unknown
    assert int8_advice({}) == int8_advice({"quantization": "not json"}) == unknown


def test_embedding_a_self_check_changes_nothing_else(tmp_path, camvid_dir):
    from textseg.cli import main

    source = MODELS / "textseg_default.onnx"
    copy = tmp_path / "m.onnx"
    copy.write_bytes(with_metadata(source.read_bytes(), {SELF_CHECK_KEY: "stale"}))
    assert main(["self-check", str(copy), "--embed", str(camvid_dir / "train"),
                 "--frames", "2", "--backend", "onnxruntime"]) == 0
    before, after = read_onnx_model(source), read_onnx_model(copy)
    assert len(read_self_check(after.metadata).frames) == 2
    assert {k: v for k, v in before.metadata.items() if k != SELF_CHECK_KEY} == \
        {k: v for k, v in after.metadata.items() if k != SELF_CHECK_KEY}
    assert main(["self-check", str(copy), "--backend", "onnxruntime"]) == 0


@pytest.mark.parametrize("size", [(720, 1280), (240, 320), (120, 160)])
def test_resized_run_counts_interior_pixels_only(size):
    """A TensorRT engine has one input size: the frames run resized to it and the labels come
    back with nearest-neighbour; boundary pixels moved by the resizing do not count (the
    trained default model and its stored real frames, at a camera size and a smaller one)."""
    model = MODELS / "textseg_default.onnx"
    backend = OnnxRuntimeBackend(model, self_check="off")
    stored = read_self_check(read_onnx_model(model).metadata)
    result = run_self_check(lambda frames: [r.labels for r in backend.infer_batch(frames)],
                            stored, "fp32", "onnxruntime", size=size)
    assert result.size == size and result.passed, result.describe()


# --- TensorRT's stand-in (no TensorRT on these machines) --------------------------------


def _stand_in_engine(model, tmp_path, compute_labels, **kwargs):
    """An engine of the stand-in at the tiny model's network size (96x128)."""
    from test_tensorrt_backend import FakeCuda, make_fake_tensorrt

    cuda = FakeCuda()
    trt, _ = make_fake_tensorrt(cuda, compute_labels=compute_labels)
    lines: list[str] = []
    backend = TensorRTBackend(model, cache_dir=tmp_path / "engines", trt=trt, cuda=cuda,
                              report=lines.append, input_size=(96, 128), **kwargs)
    return backend, lines


def _model_labels(model):
    """What a correct engine computes: the model's labels (ONNX Runtime on the CPU)."""
    reference = OnnxRuntimeBackend(model, self_check="off")
    return lambda images: np.stack([r.labels for r in reference.infer_batch(list(images))])


def test_tensorrt_stand_in_runs_the_check_on_each_engine_it_loads(tiny_model_path, tmp_path):
    backend, lines = _stand_in_engine(tiny_model_path, tmp_path, _model_labels(tiny_model_path))
    assert backend.self_check.passed and backend.self_check.agreement == 1.0
    assert backend.self_check.precision == "fp16"  # the engine's precision, not the file's
    assert any("self-check passed" in line for line in lines)
    backend.close()


def test_tensorrt_stand_in_with_a_bad_engine_is_refused(tiny_model_path, tmp_path):
    """An engine computing wrong labels (the stand-in's R % 11): refused with what a vehicle
    user needs: the engine file, the agreement, the rebuild command and the fallback."""
    with pytest.raises(SelfCheckFailed) as failed:
        _stand_in_engine(tiny_model_path, tmp_path, None)
    message = str(failed.value)
    assert ".engine" in message and "FAILED" in message
    assert "textseg bake" in message and "--force" in message and "fp32" in message
    backend, lines = _stand_in_engine(tiny_model_path, tmp_path, None, self_check="warn")
    assert not backend.self_check.passed
    assert any(line.startswith("WARNING") for line in lines)
    backend.close()
