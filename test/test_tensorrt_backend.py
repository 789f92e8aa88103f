"""TensorRT backend.

TensorRT cannot be installed on these machines. What can be checked without it is checked for
real: I/O binding shapes, calibration images, the backend's errors where TensorRT is missing.
Tests named `..._with_fake_tensorrt_module` drive the real backend code against a stand-in
`tensorrt` module and a host-memory stand-in for CUDA, to check the build-call sequence
(parser, pinned optimisation profile, precision flags, calibrator) and the cache decisions
(reuse on restart, rebuild on upgrade, corruption, refusal when building is not allowed). The
test needing real TensorRT and a GPU is skipped here with that reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from textseg.engine import BackendOptions, choose_backend, load_backend, tensorrt_problem
from textseg.engine.calibration import CalibrationError, CalibrationImages
from textseg.engine.contract import ContractError
from textseg.engine.engine_cache import EngineCacheError, read_record, sidecar_path
from textseg.engine.onnx_file import model_precision
from textseg.engine.tensorrt_backend import (
    TENSORRT_MISSING,
    EngineLoadError,
    EngineRunner,
    EngineTensor,
    TensorRTBackend,
    TensorRTUnavailable,
    import_tensorrt,
    plan_bindings,
)
from textseg.engine.tensorrt_build import (
    BuildPlan,
    EngineBuildCancelled,
    EngineBuildError,
    plan_build,
    tensorrt_logger,
)

# --- pure parts ---------------------------------------------------------------------------


def _contract_tensors(confidence=True, image_shape=(1, -1, -1, 3)):
    tensors = [EngineTensor("image", True, "uint8", image_shape),
               EngineTensor("labels", False, "uint8", (1, -1, -1))]
    if confidence:
        tensors.append(EngineTensor("confidence", False, "uint8", (1, -1, -1)))
    return tensors


def test_bindings_for_a_camera_size():
    bindings = plan_bindings(_contract_tensors(), 720, 1280)
    assert [(b.name, b.is_input, b.shape) for b in bindings] == [
        ("image", True, (1, 720, 1280, 3)), ("labels", False, (1, 720, 1280)),
        ("confidence", False, (1, 720, 1280))]
    assert bindings[0].nbytes == 720 * 1280 * 3
    assert bindings[1].nbytes == 720 * 1280


def test_bindings_without_confidence():
    assert [b.name for b in plan_bindings(_contract_tensors(False), 4, 5)] == ["image", "labels"]


def test_static_engine_of_the_same_size_binds():
    tensors = [EngineTensor("image", True, "uint8", (1, 4, 5, 3)),
               EngineTensor("labels", False, "uint8", (1, 4, 5))]
    assert plan_bindings(tensors, 4, 5)[1].shape == (1, 4, 5)


@pytest.mark.parametrize("tensors, message", [
    ([EngineTensor("input", True, "uint8", (1, -1, -1, 3)),
      EngineTensor("labels", False, "uint8", (1, -1, -1))], "expected one input 'image'"),
    ([EngineTensor("image", True, "float32", (1, -1, -1, 3)),
      EngineTensor("labels", False, "uint8", (1, -1, -1))], "must be uint8"),
    ([EngineTensor("image", True, "uint8", (1, -1, -1, 3))], "no output 'labels'"),
    ([EngineTensor("image", True, "uint8", (1, -1, -1, 3)),
      EngineTensor("labels", False, "int32", (1, -1, -1))], "output 'labels' must be uint8"),
    ([EngineTensor("image", True, "uint8", (1, 8, 8, 3)),
      EngineTensor("labels", False, "uint8", (1, 8, 8))], "is fixed to"),
    (_contract_tensors() + [EngineTensor("logits", False, "float32", (1, 11, -1, -1))],
     "unexpected I/O tensors"),
])
def test_bindings_refuse_engines_off_contract(tensors, message):
    with pytest.raises(ContractError, match=message):
        plan_bindings(tensors, 4, 5)


def test_tensorrt_missing_here_gives_one_clear_reason(tiny_model_path):
    if tensorrt_problem() is None:
        pytest.skip("TensorRT and a GPU are usable on this machine")
    assert TENSORRT_MISSING in tensorrt_problem() or "GPU" in tensorrt_problem()
    with pytest.raises(TensorRTUnavailable):
        load_backend(tiny_model_path, BackendOptions(backend="tensorrt"))
    name, why = choose_backend("auto", tiny_model_path)
    assert name == "onnxruntime" and "TensorRT is not usable" in why


def test_engine_file_needs_tensorrt(tmp_path):
    with pytest.raises(ValueError, match="use backend tensorrt"):
        choose_backend("onnxruntime", tmp_path / "m.engine")


# --- calibration images (real CamVid frames) ----------------------------------------------

@pytest.fixture
def calibration_dir(tmp_path, camvid_dir):
    folder = tmp_path / "calibration"
    folder.mkdir()
    for path in sorted((camvid_dir / "val").glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def test_calibration_batches_are_camera_frames_at_the_engine_size(calibration_dir):
    images = CalibrationImages(calibration_dir, (48, 64))
    batches = list(images)
    assert len(images) == len(batches) == 3
    for batch in batches:
        assert batch.shape == (1, 48, 64, 3) and batch.dtype == np.uint8
        assert batch.flags.c_contiguous
    assert len({b.tobytes() for b in batches}) == 3


def test_calibration_digest_follows_content_and_size(calibration_dir):
    digest = CalibrationImages(calibration_dir, (48, 64)).digest()
    assert digest == CalibrationImages(calibration_dir, (48, 64)).digest()
    assert digest != CalibrationImages(calibration_dir, (96, 128)).digest()
    first = sorted(calibration_dir.iterdir())[0]
    first.write_bytes(sorted(calibration_dir.iterdir())[1].read_bytes())
    assert digest != CalibrationImages(calibration_dir, (48, 64)).digest()


def test_calibration_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        CalibrationImages(tmp_path / "absent", (8, 8))
    with pytest.raises(CalibrationError, match="no calibration images"):
        CalibrationImages(tmp_path, (8, 8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="cannot read"):
        CalibrationImages(tmp_path, (8, 8)).batch(0)


# --- real TensorRT (skipped where it cannot run) ------------------------------------------

def test_real_tensorrt_engine_matches_onnxruntime(tiny_model_path, tmp_path, camvid_frames):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    if tensorrt_problem() is not None:
        pytest.skip(f"TensorRT cannot run here: {tensorrt_problem()}")
    (_, rgb), = camvid_frames(1)
    backend = TensorRTBackend(tiny_model_path, precision="fp32", cache_dir=tmp_path,
                              input_size=rgb.shape[:2])
    try:
        labels = backend.infer(rgb).labels
    finally:
        backend.close()
    reference = load_backend(tiny_model_path, BackendOptions(backend="onnxruntime")).infer(
        rgb).labels
    assert (labels == reference).mean() > 0.99


# --- a stand-in tensorrt module and CUDA --------------------------------------------------

class FakeCuda:
    """Device memory as host bytearrays; counts what is allocated."""

    source = "fake"

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self._next = 0x1000
        self.streams: set[int] = set()
        self.pinned: dict[int, np.ndarray] = {}  # page-locked host buffers, by address

    def host_array(self, shape):
        array = np.zeros(shape, np.uint8)
        self.pinned[array.ctypes.data] = array
        return array

    def free_host_array(self, array):
        del self.pinned[array.ctypes.data]

    def device_count(self):
        return 1

    def device_name(self, device=0):
        return "Fake GPU"

    def compute_capability(self, device=0):
        return 8, 7

    def malloc(self, nbytes):
        self._next += 0x1000
        self.memory[self._next] = bytearray(nbytes)
        return self._next

    def free(self, pointer):
        del self.memory[pointer]

    def stream_create(self):
        handle = 100 + len(self.streams)
        self.streams.add(handle)
        return handle

    def stream_destroy(self, stream):
        self.streams.remove(stream)

    def stream_synchronize(self, stream):
        assert stream in self.streams

    def copy_to_device(self, device, host, stream):
        # A batch smaller than the largest copies the start of the buffers (batch outermost).
        assert host.flags.c_contiguous and host.nbytes <= len(self.memory[device])
        assert host.ctypes.data in self.pinned, "copies go through page-locked buffers"
        self.memory[device][:host.nbytes] = host.tobytes()

    def copy_to_host(self, host, device, stream):
        assert host.flags.c_contiguous and host.nbytes <= len(self.memory[device])
        assert host.ctypes.data in self.pinned, "copies go through page-locked buffers"
        host[...] = np.frombuffer(self.memory[device], np.uint8)[:host.nbytes].reshape(
            host.shape)


def make_fake_tensorrt(cuda: FakeCuda, version: str = "10.3.0", build_garbage: bool = False,
                       parse_ok: bool = True, compute_labels=None):
    """A `tensorrt` stand-in recording every builder call; its 'engines' are JSON that its
    runtime turns into a context computing labels = R % 11 (or `compute_labels(images)`, e.g.
    the model's own labels from ONNX Runtime), confidence = G. Optimisation
    profiles behave as TensorRT documents them: `add_optimization_profile` returns the
    profile's index, a context runs only the input shape its current profile allows, and
    after `set_optimization_profile_async` the input shape must be set again."""
    calls: list = []

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
            self.shape = tuple(opt)

    class Config:
        def __init__(self):
            self.flags, self.int8_calibrator, self.progress_monitor = set(), None, None
            self.profile, self.profiles = None, []

        def set_flag(self, flag):
            calls.append(("set_flag", flag))
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))
            self.profiles.append(profile)
            self.profile = self.profiles[0]
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile):
            calls.append(("set_calibration_profile", self.profiles.index(profile)))

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return parse_ok and Path(path).is_file()

        def get_error(self, index):
            return "In node 3 (ArgMax): unsupported"

    class Builder:
        def __init__(self, logger):
            calls.append(("Builder",))

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network", sorted(config.flags)))
            monitor = config.progress_monitor
            monitor.phase_start("Building engine", None, 2)
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
            if "INT8" in config.flags and config.int8_calibrator.read_calibration_cache():
                calls.append(("calibration cache used",))  # TensorRT then skips the pass
            elif "INT8" in config.flags:  # what TensorRT does with a calibrator
                calibrator = config.int8_calibrator
                assert calibrator.get_batch_size() == 1
                batches = 0
                while (pointers := calibrator.get_batch(["image"])) is not None:
                    image = np.frombuffer(cuda.memory[pointers[0]], np.uint8)
                    assert image.size == int(np.prod(config.profile.shape))
                    batches += 1
                calls.append(("calibrated", batches))
                calibrator.write_calibration_cache(b"calibration table")
            if build_garbage:
                return b"garbage"
            return json.dumps({"fake": version, "flags": sorted(config.flags),
                               "profiles": [p.shape for p in config.profiles]}).encode()

    class Context:
        def __init__(self, profiles):
            self.addresses, self.shape, self.profiles, self.profile = {}, None, profiles, 0

        def set_optimization_profile_async(self, index, stream):
            calls.append(("set_optimization_profile_async", index))
            assert stream in cuda.streams
            if not 0 <= index < len(self.profiles):
                return False
            self.profile, self.shape = index, None  # the input shape must be set again
            return True

        def set_input_shape(self, name, shape):
            if tuple(shape) != tuple(self.profiles[self.profile]):  # min = opt = max
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.shape if name == "image" else self.shape[:3]

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer
            return True

        def execute_async_v3(self, stream):
            calls.append(("execute_async_v3", stream, self.shape))
            assert self.shape is not None, "input shape not set for the current profile"
            count = int(np.prod(self.shape))
            image = np.frombuffer(cuda.memory[self.addresses["image"]], np.uint8
                                  )[:count].reshape(self.shape)
            labels = (image[..., 0] % 11 if compute_labels is None
                      else compute_labels(image)).astype(np.uint8).tobytes()
            cuda.memory[self.addresses["labels"]][:len(labels)] = labels
            confidence = image[..., 1].copy().tobytes()
            cuda.memory[self.addresses["confidence"]][:len(confidence)] = confidence
            return True

    class Engine:
        num_io_tensors = 3
        _names = ["image", "labels", "confidence"]

        def __init__(self, profiles):
            self.profiles = profiles
            self.num_optimization_profiles = len(profiles)

        def get_tensor_name(self, index):
            return self._names[index]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "image" else "OUTPUT"

        def get_tensor_dtype(self, name):
            return "UINT8"

        def get_tensor_shape(self, name):
            return (-1, -1, -1, 3) if name == "image" else (-1, -1, -1)

        def create_execution_context(self):
            return Context(self.profiles)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            calls.append(("deserialize_cuda_engine",))
            try:
                description = json.loads(bytes(data))
            except ValueError:
                return None
            if description.get("fake") != version:
                return None
            return Engine(description["profiles"])

    common = dict(
        __version__=version, ILogger=ILogger, IProgressMonitor=IProgressMonitor,
        Builder=Builder, OnnxParser=Parser, Runtime=Runtime,
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),
        nptype=lambda dtype: np.uint8)
    if version.startswith("10."):
        module = SimpleNamespace(**common, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2,
                                 BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8"))
    else:
        # TensorRT 11's attribute set: no FP16/INT8 flags, no implicit-int8 calibrator, and a
        # builder config without int8_calibrator / set_calibration_profile (names as in
        # TensorRT's Python bindings), so a call 11 removed fails here as it would there.
        class Config11:
            __slots__ = ("flags", "progress_monitor", "profile", "profiles")

            def __init__(self):
                self.flags, self.progress_monitor, self.profile = set(), None, None
                self.profiles = []

            def set_flag(self, flag):
                calls.append(("set_flag", flag))
                self.flags.add(flag)

            def set_memory_pool_limit(self, pool, size):
                calls.append(("set_memory_pool_limit", pool, size))

            def add_optimization_profile(self, profile):
                calls.append(("add_optimization_profile",))
                self.profiles.append(profile)
                self.profile = self.profiles[0]
                return len(self.profiles) - 1

        class Builder11(Builder):
            def create_builder_config(self):
                return Config11()

        module = SimpleNamespace(**{**common, "Builder": Builder11},
                                 BuilderFlag=SimpleNamespace(TF32="TF32", REFIT="REFIT"))
    return module, calls


def _names(calls):
    return [c[0] for c in calls]


@pytest.fixture
def fake_gpu():
    return FakeCuda()


def _backend(model, cache, cuda, version="10.3.0", **kwargs):
    trt, calls = make_fake_tensorrt(cuda, version, **{k: kwargs.pop(k) for k in
                                                      ("build_garbage", "parse_ok",
                                                       "compute_labels")
                                                      if k in kwargs})
    lines: list[str] = []
    # The stand-in's labels (R % 11) are not the model's: the self-check has its own tests
    # (test_self_check.py), with a stand-in that computes the model's labels.
    kwargs.setdefault("self_check", "off")
    backend = TensorRTBackend(model, cache_dir=cache, trt=trt, cuda=cuda,
                              report=lines.append, **kwargs)
    return backend, calls, lines


def test_build_sequence_fp16_with_fake_tensorrt_module(tiny_model_path, tmp_path, fake_gpu):
    backend, calls, lines = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    assert ("parse_from_file", str(tiny_model_path)) in calls
    assert ("create_network", 0) in calls
    assert ("set_shape", "image", (1, 48, 64, 3), (1, 48, 64, 3), (1, 48, 64, 3)) in calls
    assert ("build_serialized_network", ["FP16"]) in calls
    assert "set_calibration_profile" not in _names(calls)
    order = _names(calls)
    assert order.index("parse_from_file") < order.index("set_shape") < \
        order.index("build_serialized_network") < order.index("deserialize_cuda_engine")
    assert any("building TensorRT engine" in line and "no cached engine" in line
               for line in lines)
    assert any(line.startswith("engine build: Building engine") for line in lines)
    engine = backend.engine_paths[(48, 64)]
    record = read_record(engine)
    assert record.key.precision == "fp16" and record.key.input_size == (48, 64)
    assert record.key.gpu_name == "Fake GPU" and record.key.compute_capability == "8.7"
    assert record.has_confidence and record.onnx_path == str(tiny_model_path.resolve())
    assert record.model_metadata["textseg.class_names"]
    backend.close()
    assert fake_gpu.memory == {} and fake_gpu.streams == set() and fake_gpu.pinned == {}


def test_inference_binds_and_copies_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                              fake_gpu):
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    assert "build_serialized_network" not in _names(calls)  # lazy: built on the first frame
    result = backend.infer(rgb, want_confidence=True)
    # Every host side of a copy is a page-locked buffer: input staging and both outputs.
    assert sorted(a.shape for a in fake_gpu.pinned.values()) == [
        (1, 48, 64), (1, 48, 64), (1, 48, 64, 3)]
    np.testing.assert_array_equal(result.labels, rgb[..., 0] % 11)
    np.testing.assert_array_equal(result.confidence, rgb[..., 1])
    assert backend.infer(rgb).confidence is None
    padded = np.zeros((48, 70, 3), np.uint8)
    padded[:, :64] = rgb
    view = padded[:, :64]  # not contiguous: made contiguous before the copy
    np.testing.assert_array_equal(backend.infer(view).labels, rgb[..., 0] % 11)
    assert _names(calls).count("build_serialized_network") == 1
    other = backend.infer(rgb[:32, :40])  # a second camera size gets its own engine
    assert other.labels.shape == (32, 40)
    assert _names(calls).count("build_serialized_network") == 2
    assert backend.info.num_classes == 11
    assert "engines: 64x48, 40x32" in backend.description
    backend.close()


def test_restart_reuses_the_engine_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                             fake_gpu):
    first, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    first.close()
    second, calls, lines = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64),
                                    allow_build=False)
    assert "Builder" not in _names(calls)
    assert _names(calls).count("deserialize_cuda_engine") == 1
    assert any("reused" in line for line in lines)
    second.close()


def test_tensorrt_upgrade_rebuilds_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                             fake_gpu):
    old, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, "10.3.0", input_size=(48, 64))
    old.close()
    new, calls, lines = _backend(tiny_model_path, tmp_path, fake_gpu, "10.5.0",
                                 input_size=(48, 64))
    assert _names(calls).count("build_serialized_network") == 1
    assert any("is stale" in line and "TensorRT version 10.3.0 -> 10.5.0" in line
               for line in lines)
    new.close()
    with pytest.raises(EngineCacheError, match="TensorRT version 10.5.0 -> 10.7.0") as info:
        _backend(tiny_model_path, tmp_path, fake_gpu, "10.7.0", input_size=(48, 64),
                 allow_build=False)
    assert "textseg bake" in str(info.value)


def test_build_not_allowed_fails_clearly_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                                   fake_gpu):
    with pytest.raises(EngineCacheError, match="no cached engine.*textseg bake"):
        _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64), allow_build=False)


def test_corrupt_engine_is_rebuilt_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                             fake_gpu):
    first, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    engine = first.engine_paths[(48, 64)]
    first.close()
    engine.write_bytes(engine.read_bytes()[:-3] + b"}}}")
    again, calls, lines = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    assert _names(calls).count("build_serialized_network") == 1
    assert any("corrupt" in line for line in lines)
    again.close()


def test_engine_that_does_not_deserialize_is_rebuilt_once_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu):
    first, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    engine = first.engine_paths[(48, 64)]
    first.close()
    # Hash and sidecar agree, but the runtime refuses the plan (e.g. a driver change).
    from textseg.engine.engine_cache import store_engine

    store_engine(engine, b"not a plan", read_record(engine))
    again, calls, lines = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    assert _names(calls).count("build_serialized_network") == 1
    assert any("cannot be loaded" in line for line in lines)
    again.close()
    store_engine(engine, b"not a plan", read_record(engine))
    with pytest.raises(EngineCacheError, match="cannot be loaded"):
        _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64), allow_build=False)


def test_fresh_engine_that_does_not_load_is_an_error_not_a_loop_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu):
    with pytest.raises(EngineLoadError, match="just built cannot be loaded"):
        _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64), build_garbage=True)


def test_parser_errors_are_reported_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                              fake_gpu):
    with pytest.raises(EngineBuildError, match="cannot parse.*ArgMax"):
        _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64), parse_ok=False)


def test_int8_calibrates_from_the_image_folder_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu, calibration_dir):
    backend, calls, lines = _backend(tiny_model_path, tmp_path / "cache", fake_gpu,
                                     precision="int8", calibration_dir=calibration_dir,
                                     input_size=(48, 64))
    assert ("build_serialized_network", ["FP16", "INT8"]) in calls
    assert "set_calibration_profile" in _names(calls)
    assert ("calibrated", 3) in calls
    assert any("int8 calibration: 3/3" in line for line in lines)
    record = read_record(backend.engine_paths[(48, 64)])
    assert record.key.calibration_sha256 == CalibrationImages(calibration_dir,
                                                              (48, 64)).digest()
    tables = list((tmp_path / "cache").glob("*.calibration"))
    assert len(tables) == 1
    backend.close()
    # A TensorRT upgrade rebuilds the engine, and the calibration table is found again.
    upgraded, calls, _ = _backend(tiny_model_path, tmp_path / "cache", fake_gpu,
                                  version="10.5.0", precision="int8",
                                  calibration_dir=calibration_dir, input_size=(48, 64))
    assert ("calibration cache used",) in calls and "calibrated" not in _names(calls)
    assert list((tmp_path / "cache").glob("*.calibration")) == tables
    upgraded.close()
    assert fake_gpu.memory == {}  # the calibrator's buffer is freed too
    with pytest.raises(EngineBuildError, match="needs calibration images"):
        _backend(tiny_model_path, tmp_path, fake_gpu, precision="int8")


def test_baked_engine_file_runs_at_its_size_with_fake_tensorrt_module(tiny_model_path,
                                                                      tmp_path, fake_gpu):
    baker, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    engine = baker.engine_paths[(48, 64)]
    baker.close()
    backend, calls, _ = _backend(engine, tmp_path / "other", fake_gpu)
    assert "Builder" not in _names(calls)
    assert backend.info.num_classes == 11 and backend.has_confidence
    rgb = np.random.default_rng(1).integers(0, 256, (96, 128, 3), np.uint8)
    result = backend.infer(rgb)  # another size: resized to the engine's and back
    assert result.labels.shape == (96, 128)
    assert result.labels.max() < 11
    backend.close()


def test_baked_engine_for_another_gpu_is_rebuilt_from_its_onnx_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu):
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_model_path, model)
    baker, _, _ = _backend(model, tmp_path / "a", fake_gpu, "10.3.0", input_size=(48, 64))
    engine = baker.engine_paths[(48, 64)]
    baker.close()
    backend, calls, lines = _backend(engine, tmp_path / "b", fake_gpu, "10.5.0")
    assert _names(calls).count("build_serialized_network") == 1
    assert any("cannot be used" in line and "rebuilding" in line for line in lines)
    assert backend.engine_paths[(48, 64)].parent == tmp_path / "b"
    backend.close()
    model.unlink()
    with pytest.raises(EngineCacheError, match="Re-bake it on this machine"):
        _backend(engine, tmp_path / "c", fake_gpu, "10.7.0")


def test_engine_without_sidecar_is_refused_with_fake_tensorrt_module(tmp_path, fake_gpu):
    engine = tmp_path / "orphan.engine"
    engine.write_bytes(b"{}")
    with pytest.raises(EngineCacheError, match="has no sidecar"):
        _backend(engine, tmp_path, fake_gpu)
    assert not sidecar_path(engine).exists()


def test_baked_engine_that_does_not_deserialize_is_rebuilt_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu):
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_model_path, model)
    baker, _, _ = _backend(model, tmp_path / "a", fake_gpu, input_size=(48, 64))
    engine = baker.engine_paths[(48, 64)]
    baker.close()
    from textseg.engine.engine_cache import store_engine

    store_engine(engine, b"not a plan", read_record(engine))  # consistent, but unloadable
    backend, calls, lines = _backend(engine, tmp_path / "b", fake_gpu)
    assert _names(calls).count("build_serialized_network") == 1
    assert any("could not deserialize" in line for line in lines)
    backend.close()
    with pytest.raises(EngineCacheError, match="could not deserialize"):
        _backend(engine, tmp_path / "c", fake_gpu, allow_build=False)


# --- TensorRT 10 and 11: build paths ---------------------------------------------------------

@pytest.mark.parametrize("major, precision, onnx_precision, expected", [
    (10, "fp32", "fp32", BuildPlan("builder-flags")),
    (10, "fp16", "fp32", BuildPlan("builder-flags", ("FP16",))),
    (10, "int8", "fp32", BuildPlan("builder-flags", ("FP16", "INT8"), calibrate=True)),
    (10, "int8", "int8", BuildPlan("strongly-typed")),
    (10, "fp16", "fp16", BuildPlan("strongly-typed")),
    (11, "fp32", "fp32", BuildPlan("strongly-typed")),
    (11, "int8", "int8", BuildPlan("strongly-typed")),
    (11, "fp16", "fp16", BuildPlan("strongly-typed")),
])
def test_build_plan_per_tensorrt_generation(major, precision, onnx_precision, expected):
    assert plan_build(major, precision, onnx_precision) == expected


@pytest.mark.parametrize("major, precision, onnx_precision, message", [
    (11, "fp16", "fp32", "strongly typed networks only.*fp16 ONNX model"),
    (11, "int8", "fp32", "strongly typed networks only.*textseg quantize"),
    (10, "fp16", "int8", "carries its precision \\(int8 Q/DQ\\): bake it with precision int8"),
    (11, "fp32", "fp16", "carries its precision \\(fp16\\)"),
])
def test_build_plan_refusals_name_the_way_out(major, precision, onnx_precision, message):
    with pytest.raises(EngineBuildError, match=message):
        plan_build(major, precision, onnx_precision)


@pytest.mark.parametrize("version", ["9.2.0", "12.0.1"])
def test_other_tensorrt_majors_are_refused_naming_the_supported_ones(version, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt",
                        SimpleNamespace(__version__=version))
    with pytest.raises(TensorRTUnavailable, match="supports TensorRT 10.x and 11.x"):
        import_tensorrt()


@pytest.fixture(scope="module")
def qdq_model(tiny_model_path, tmp_path_factory, camvid_dir):
    pytest.importorskip("onnx", reason="onnx needed for the quantization tools")
    from textseg.tools.quantize import quantize_model

    path = tmp_path_factory.mktemp("qdq") / "tiny_int8.onnx"
    quantize_model(tiny_model_path, path, camvid_dir / "val", frames=2)
    return path


def test_model_precision_reads_the_graph(tiny_model_path, qdq_model):
    assert model_precision(tiny_model_path) == "fp32"
    assert model_precision(qdq_model) == "int8"


def test_tensorrt11_bakes_a_qdq_model_strongly_typed_with_fake_tensorrt_module(
        qdq_model, tmp_path, fake_gpu):
    backend, calls, _ = _backend(qdq_model, tmp_path, fake_gpu, version="11.0.0",
                                 precision="int8", input_size=(48, 64))
    assert ("create_network", 1 << 1) in calls  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert "set_flag" not in _names(calls) and "set_calibration_profile" not in _names(calls)
    record = read_record(backend.engine_paths[(48, 64)])
    assert record.extra == {"build_path": "strongly-typed", "builder_flags": [],
                            "tensorrt_major": 11, "onnx_precision": "int8",
                            "batch_profiles": [1]}
    backend.close()


def test_tensorrt11_refuses_flag_precision_on_an_fp32_model_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu, calibration_dir):
    for precision in ("fp16", "int8"):
        with pytest.raises(EngineBuildError, match="strongly typed networks only"):
            _backend(tiny_model_path, tmp_path, fake_gpu, version="11.0.0",
                     precision=precision, calibration_dir=calibration_dir)
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu, version="11.0.0",
                                 precision="fp32", input_size=(48, 64))
    assert ("create_network", 2) in calls and "set_flag" not in _names(calls)
    backend.close()


def test_the_tensorrt10_flag_path_fails_on_tensorrt11s_attribute_set(tiny_model_path,
                                                                     fake_gpu):
    """What the stand-in for 11 guards against: the 10-only calls are really gone there."""
    from textseg.engine.tensorrt_build import build_serialized_engine

    trt11, _ = make_fake_tensorrt(fake_gpu, "11.0.0")
    assert not hasattr(trt11, "IInt8EntropyCalibrator2")
    assert not hasattr(trt11.BuilderFlag, "FP16") and not hasattr(trt11.BuilderFlag, "INT8")
    with pytest.raises(AttributeError):
        build_serialized_engine(trt11, tiny_model_path, BuildPlan("builder-flags", ("FP16",)),
                                (48, 64), lambda line: None)


def test_tensorrt10_bakes_a_qdq_model_without_a_calibrator_with_fake_tensorrt_module(
        qdq_model, tmp_path, fake_gpu):
    backend, calls, _ = _backend(qdq_model, tmp_path, fake_gpu, precision="int8",
                                 input_size=(48, 64))
    assert ("create_network", 2) in calls and "calibrated" not in _names(calls)
    assert read_record(backend.engine_paths[(48, 64)]).extra["build_path"] == "strongly-typed"
    backend.close()


def test_a_cancelled_build_stops_with_fake_tensorrt_module(tiny_model_path, tmp_path, fake_gpu):
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu)
    backend.cancel_builds()  # as at shutdown: the progress monitor now answers False
    with pytest.raises(EngineBuildCancelled):
        backend.prepare(48, 64)
    assert not list(tmp_path.glob("*.engine"))  # nothing half-built is cached
    backend.close()


def test_an_unreadable_calibration_image_fails_the_build_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu, calibration_dir):
    images = CalibrationImages(calibration_dir, (48, 64))
    images.files[1].write_bytes(b"not a png")  # readable name, unreadable content
    with pytest.raises(EngineBuildError, match="int8 calibration failed.*cannot read"):
        _backend(tiny_model_path, tmp_path / "cache", fake_gpu, precision="int8",
                 calibration_dir=calibration_dir, input_size=(48, 64))


def test_one_tensorrt_logger_per_process(fake_gpu):
    trt, _ = make_fake_tensorrt(fake_gpu)
    assert tensorrt_logger(trt, None) is tensorrt_logger(trt, lambda line: None)


def test_cuda13_wheel_layout_is_searched_for_libcudart(tmp_path, monkeypatch):
    from textseg.engine import cuda_runtime

    for folder, name in (("cu13", "libcudart.so.13"), ("cuda_runtime", "libcudart.so.12")):
        lib = tmp_path / "nvidia" / folder / "lib"
        lib.mkdir(parents=True)
        (lib / name).touch()
    monkeypatch.setattr(cuda_runtime.sys, "path", [str(tmp_path)])
    candidates = cuda_runtime._cudart_candidates()
    cu13 = str(tmp_path / "nvidia" / "cu13" / "lib" / "libcudart.so.13")
    cu12 = str(tmp_path / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12")
    assert cu13 in candidates and cu12 in candidates
    assert candidates.index(cu13) < candidates.index(cu12)


# --- several cameras, one inference: one profile per batch size ----------------------------

@pytest.fixture(scope="module")
def fixed_batch_model(tiny_model_path, tmp_path_factory):
    """The tiny model as exported before textseg 0.3: batch axis fixed at 1."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_model_path))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path_factory.mktemp("fixed_batch") / "fixed.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_batch_profiles_are_built_and_switched_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu, version):
    precision = "fp16" if version.startswith("10.") else "fp32"
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu, version=version,
                                 precision=precision, input_size=(48, 64), max_batch=3)
    shapes = [c[2] for c in calls if c[0] == "set_shape"]
    assert shapes == [(1, 48, 64, 3), (2, 48, 64, 3), (3, 48, 64, 3)]  # min = opt = max each
    engine = backend.engine_paths[(48, 64)]
    assert ".b3." in engine.name
    record = read_record(engine)
    assert record.key.max_batch == 3 and record.extra["batch_profiles"] == [1, 2, 3]
    # Buffers are sized once, for the largest batch, and shared by every profile.
    assert sorted(a.shape for a in fake_gpu.pinned.values()) == [
        (3, 48, 64), (3, 48, 64), (3, 48, 64, 3)]
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8)
              for i in range(3)]
    calls.clear()
    results = backend.infer_batch(frames[:2], want_confidence=True)
    assert ("set_optimization_profile_async", 1) in calls
    assert ("execute_async_v3", 100, (2, 48, 64, 3)) in calls
    for frame, result in zip(frames[:2], results, strict=True):
        np.testing.assert_array_equal(result.labels, frame[..., 0] % 11)
        np.testing.assert_array_equal(result.confidence, frame[..., 1])
    results = backend.infer_batch(frames)
    assert [r.confidence for r in results] == [None] * 3
    for frame, result in zip(frames, results, strict=True):
        np.testing.assert_array_equal(result.labels, frame[..., 0] % 11)
    calls.clear()
    single = backend.infer(frames[2])  # back to profile 0
    assert ("set_optimization_profile_async", 0) in calls
    np.testing.assert_array_equal(single.labels, frames[2][..., 0] % 11)
    calls.clear()
    backend.infer(frames[1])  # same profile: no switch
    assert "set_optimization_profile_async" not in _names(calls)
    assert "batch 1-3" in backend.description
    with pytest.raises(ValueError, match="at most 3"):
        backend.infer_batch(frames + frames[:1])
    with pytest.raises(ValueError, match="one size"):
        backend.infer_batch([frames[0], frames[1][:32]])
    backend.close()
    assert fake_gpu.memory == {} and fake_gpu.pinned == {}


def test_what_the_node_asks_of_the_backend_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                                    fake_gpu):
    """The SegmentationBackend members the node relies on: batching pays here (the node
    batches its cameras by default), the batch bound the engine was built for, and nothing to
    prepare for confidence (every engine computes it)."""
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64),
                                 max_batch=2)
    assert backend.batching_pays is True and backend.max_batch == 2
    calls.clear()
    backend.prepare_confidence()
    assert calls == []
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    np.testing.assert_array_equal(backend.infer(frame, want_confidence=True).confidence,
                                  frame[..., 1])
    backend.close()


def test_batch_engines_are_cached_apart_from_single_frame_engines_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu):
    single, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    single.close()
    batched, calls, lines = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64),
                                     max_batch=2)
    assert "build_serialized_network" in _names(calls)  # another key: built, not reused
    assert batched.engine_paths[(48, 64)] != single.engine_paths[(48, 64)]
    batched.close()
    again, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64),
                               max_batch=2, allow_build=False)
    assert "Builder" not in _names(calls)
    assert len(again.infer_batch([np.zeros((48, 64, 3), np.uint8)] * 2)) == 2
    again.close()


def test_a_baked_batch_engine_keeps_its_batch_size_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu):
    baked, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64),
                           max_batch=2)
    engine = baked.engine_paths[(48, 64)]
    baked.close()
    trt, _ = make_fake_tensorrt(fake_gpu)
    loaded = TensorRTBackend(engine, trt=trt, cuda=fake_gpu, self_check="off")
    assert loaded.max_batch == 2
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (3, 7)]
    assert [int(r.labels[0, 0]) for r in loaded.infer_batch(frames)] == [3, 7]
    loaded.close()


def test_int8_calibration_uses_the_single_frame_profile_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu, calibration_dir):
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu, precision="int8",
                                 calibration_dir=calibration_dir, input_size=(48, 64),
                                 max_batch=2)
    assert ("set_calibration_profile", 0) in calls and ("calibrated", 3) in calls
    backend.close()


def test_a_model_with_a_fixed_batch_runs_one_frame_per_inference_with_fake_tensorrt_module(
        fixed_batch_model, tmp_path, fake_gpu):
    backend, calls, lines = _backend(fixed_batch_model, tmp_path, fake_gpu,
                                     input_size=(48, 64), max_batch=4)
    assert backend.max_batch == 1
    assert any("fixes its batch axis at 1" in line for line in lines)
    assert [c[2] for c in calls if c[0] == "set_shape"] == [(1, 48, 64, 3)]
    backend.close()


def test_an_engine_with_too_few_profiles_is_refused(tiny_model_path, tmp_path, fake_gpu):
    single, _, _ = _backend(tiny_model_path, tmp_path, fake_gpu, input_size=(48, 64))
    engine_bytes = single.engine_paths[(48, 64)].read_bytes()
    single.close()
    trt, _ = make_fake_tensorrt(fake_gpu)
    with pytest.raises(EngineLoadError, match="1 optimisation profile"):
        EngineRunner(trt, fake_gpu, engine_bytes, (48, 64), max_batch=2)


def test_bindings_need_a_dynamic_batch_axis_for_batches():
    with pytest.raises(ContractError, match="fixes the batch at 1"):
        plan_bindings(_contract_tensors(image_shape=(1, -1, -1, 3)), 48, 64, batch=2)
    shapes = [b.shape for b in plan_bindings(_contract_tensors(image_shape=(-1, -1, -1, 3)),
                                             48, 64, batch=2)]
    assert shapes == [(2, 48, 64, 3), (2, 48, 64), (2, 48, 64)]


def test_max_batch_is_validated(tiny_model_path, tmp_path, fake_gpu):
    for bad in (0, 17, 2.0):
        with pytest.raises(ValueError, match="max_batch"):
            _backend(tiny_model_path, tmp_path, fake_gpu, max_batch=bad)


def test_bake_cli_bakes_batch_profiles_with_fake_tensorrt_module(tiny_model_path, tmp_path,
                                                                 fake_gpu, monkeypatch, capsys):
    from textseg import cli
    from textseg.engine import cuda_runtime, tensorrt_backend

    # The stand-in computes the model's own labels, so the bake's self-check passes.
    reference = load_backend(tiny_model_path, BackendOptions(backend="onnxruntime",
                                                             self_check="off"))
    trt, calls = make_fake_tensorrt(fake_gpu, compute_labels=lambda images: np.stack(
        [r.labels for r in reference.infer_batch(list(images))]))
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(cuda_runtime, "load_cuda_runtime", lambda: fake_gpu)
    assert cli.main(["bake", str(tiny_model_path), "--size", "64x48", "--max-batch", "2",
                     "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ready (fp16 64x48, batch 1-2)" in out and "self-check passed" in out
    assert [c[2] for c in calls if c[0] == "set_shape"] == [(1, 48, 64, 3), (2, 48, 64, 3)]
    assert len(list(tmp_path.glob("*.b2.*.engine"))) == 1


def test_an_onnx_model_is_parsed_once_to_open_and_bake_it_with_fake_tensorrt_module(
        tiny_model_path, tmp_path, fake_gpu, monkeypatch):
    """Its description, precision and the parser's rules come from one parse, also when the
    engine is built later."""
    from textseg.engine import onnx_file

    parses = []
    parse = onnx_file._parse
    monkeypatch.setattr(onnx_file, "_parse", lambda *a: parses.append(a[1]) or parse(*a))
    backend, calls, _ = _backend(tiny_model_path, tmp_path, fake_gpu)
    backend.prepare(48, 64)
    assert "build_serialized_network" in _names(calls)
    assert parses == [str(tiny_model_path)]
    backend.close()


def test_the_parser_rules_refuse_the_build_not_the_open_with_fake_tensorrt_module(
        tmp_path, fake_gpu, onnx_tiny_without_resize):
    backend, calls, _ = _backend(onnx_tiny_without_resize, tmp_path, fake_gpu)
    with pytest.raises(ContractError, match="breaks TensorRT's ONNX parser rules"):
        backend.prepare(48, 64)
    assert "build_serialized_network" not in _names(calls)
    backend.close()


@pytest.fixture
def onnx_tiny_without_resize(tmp_path, tiny_model_path):
    """A contract model TensorRT's parser rules refuse (no Resize to a fixed size)."""
    onnx = pytest.importorskip("onnx", reason="onnx builds the graph")
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", "h", "w", 3])
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["n", "h", "w"])
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMax", ["f"], ["m"], axes=[3], keepdims=0),
             helper.make_node("Cast", ["m"], ["labels"], to=TensorProto.UINT8)]
    model = helper.make_model(helper.make_graph(nodes, "g", [image], [labels]),
                              opset_imports=[helper.make_opsetid("", 17)])
    for prop in onnx.load(str(tiny_model_path)).metadata_props:
        entry = model.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    path = tmp_path / "no_resize.onnx"
    onnx.save(model, str(path))
    return path
