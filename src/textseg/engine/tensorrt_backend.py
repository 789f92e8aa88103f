"""TensorRT backend (TensorRT 10.x and 11.x Python APIs): bake an engine from a contract ONNX
file on the target machine (tensorrt_build), cache it, run it.

Kept thin on purpose: every decision (cache keys, reuse/rebuild, binding shapes, calibration
images) lives in TensorRT-free modules that are tested on any machine; this module only makes
the TensorRT and CUDA calls. Device memory comes from :mod:`textseg.engine.cuda_runtime`
(cuda-python or libcudart), never torch or pycuda.

Run: ``Runtime.deserialize_cuda_engine`` -> one execution context; per batch size
``set_optimization_profile_async``, ``set_input_shape``, ``set_tensor_address`` per I/O tensor
(buffers sized for the largest batch); ``execute_async_v3`` on a stream.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from textseg import __version__
from textseg.engine.backend import SegmentationResult, check_batch
from textseg.engine.calibration import CalibrationImages
from textseg.engine.contract import (
    CONFIDENCE_OUTPUT,
    INPUT_NAME,
    LABELS_OUTPUT,
    ContractError,
    ModelInfo,
    TensorSpec,
    interface_problems,
)
from textseg.engine.engine_cache import (
    ENGINE_SUFFIX,
    MAX_BATCH,
    EngineCacheError,
    EngineKey,
    EnginePlan,
    EngineRecord,
    PlatformFacts,
    build_lock,
    calibration_cache_filename,
    default_cache_dir,
    plan_engine,
    read_record,
    store_engine,
    verify_engine_file,
)
from textseg.engine.onnx_file import OnnxModel, describe_model, model_precision, read_onnx_model
from textseg.engine.self_check import (
    NOT_STORED,
    SelfCheckFailed,
    SelfCheckResult,
    check_policy,
    enforce,
    int8_advice,
    read_self_check,
    run_self_check,
    where_made,
)
from textseg.engine.tensorrt_build import (
    DEFAULT_WORKSPACE_MIB,
    BuildPlan,
    EngineBuildError,
    Report,
    build_serialized_engine,
    make_calibrator,
    plan_build,
    tensorrt_logger,
)
from textseg.engine.tensorrt_rules import check_tensorrt_rules, refuse_violations

TENSORRT_MISSING = "TensorRT is not installed on this machine"
SUPPORTED_MAJORS = (10, 11)


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or a GPU for it) is not available here."""


class EngineLoadError(RuntimeError):
    """A serialized engine could not be deserialized or bound."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(
            f"{TENSORRT_MISSING} (install it with NVIDIA's wheels or JetPack; or use "
            "backend onnxruntime)") from None
    major = tensorrt_major(trt)
    if major not in SUPPORTED_MAJORS:
        raise TensorRTUnavailable(
            f"TensorRT {trt.__version__} is not supported: textseg supports TensorRT "
            f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}")
    return trt


def tensorrt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def platform_facts(trt, cuda, device: int = 0) -> PlatformFacts:
    if cuda.device_count() < 1:
        raise TensorRTUnavailable("no CUDA GPU is visible on this machine")
    major, minor = cuda.compute_capability(device)
    return PlatformFacts(str(trt.__version__), cuda.device_name(device), f"{major}.{minor}")


# --- I/O bindings (pure, tested without TensorRT) ------------------------------------------

@dataclass(frozen=True)
class EngineTensor:
    """One I/O tensor as the engine reports it (-1 for dynamic axes)."""

    name: str
    is_input: bool
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Binding:
    name: str
    is_input: bool
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def plan_bindings(tensors: list[EngineTensor], height: int, width: int,
                  batch: int = 1) -> list[Binding]:
    """Concrete shapes of every I/O tensor for `batch` frames of (height, width), after
    checking the engine has the contract's interface (textseg.engine.contract)."""
    by_name = {t.name: t for t in tensors}
    problems = interface_problems(
        [TensorSpec(t.name, t.dtype, t.shape) for t in tensors if t.is_input],
        [TensorSpec(t.name, t.dtype, t.shape) for t in tensors if not t.is_input])
    image = by_name.get(INPUT_NAME)
    if not problems and batch > 1 and image.shape[0] != -1:
        problems.append(f"input '{INPUT_NAME}' fixes the batch at {image.shape[0]}, "
                        f"{batch} frames per inference need a dynamic batch axis (re-export "
                        "the model with textseg-train export)")
    for tensor in (image, by_name.get(LABELS_OUTPUT), by_name.get(CONFIDENCE_OUTPUT)):
        if tensor is None or len(tensor.shape) < 3:
            continue
        fixed = [(a, b) for a, b in zip(tensor.shape[1:3], (height, width), strict=True)
                 if a != -1 and a != b]
        if fixed:
            problems.append(f"'{tensor.name}' is fixed to {list(tensor.shape)}, the frame is "
                            f"{height}x{width}")
    extra = [t.name for t in tensors if t.name not in (INPUT_NAME, LABELS_OUTPUT,
                                                       CONFIDENCE_OUTPUT)]
    if extra:
        problems.append(f"unexpected I/O tensors {extra}")
    if problems:
        raise ContractError("engine does not follow the textseg contract: "
                            + "; ".join(problems))
    bindings = [Binding(INPUT_NAME, True, "uint8", (batch, height, width, 3)),
                Binding(LABELS_OUTPUT, False, "uint8", (batch, height, width))]
    if CONFIDENCE_OUTPUT in by_name:
        bindings.append(Binding(CONFIDENCE_OUTPUT, False, "uint8", (batch, height, width)))
    return bindings


# --- run -----------------------------------------------------------------------------------

class EngineRunner:
    """One deserialized engine, bound for one input size and batches of 1..max_batch frames,
    with its device buffers (sized for the largest batch, shared by every profile)."""

    def __init__(self, trt, cuda, engine_bytes: bytes, input_size: tuple[int, int],
                 report: Report | None = None, max_batch: int = 1) -> None:
        self._cuda = cuda
        self._device: dict[str, int] = {}
        self._stream: int | None = None
        self._runtime = trt.Runtime(tensorrt_logger(trt, report))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise EngineLoadError("TensorRT could not deserialize the engine (corrupt, or "
                                  "built by another TensorRT version or GPU)")
        profiles = int(getattr(self._engine, "num_optimization_profiles", 1))
        if profiles < max_batch:
            raise EngineLoadError(f"the engine has {profiles} optimisation profile(s), batches "
                                  f"up to {max_batch} need one per batch size")
        tensors = []
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            tensors.append(EngineTensor(
                name=name,
                is_input=self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                dtype=np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name,
                shape=tuple(int(d) for d in self._engine.get_tensor_shape(name))))
        height, width = input_size
        self._tensors = tensors
        self.max_batch = max_batch
        self.input_size = (height, width)
        self.bindings = plan_bindings(tensors, height, width, max_batch)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineLoadError("TensorRT could not create an execution context (out of "
                                  "device memory?)")
        self._batch = 0  # the batch size (profile + 1) the context is set up for
        try:
            self._stream = cuda.stream_create()
            for binding in self.bindings:
                self._device[binding.name] = cuda.malloc(binding.nbytes)
            self._select(1)
        except Exception:
            self.close()
            raise
        # Page-locked host buffers: the input staging copy and the outputs (copies from
        # pageable memory would be staged by the driver and not overlap).
        self._host = {b.name: cuda.host_array(b.shape) for b in self.bindings}
        self.has_confidence = CONFIDENCE_OUTPUT in self._host

    def _select(self, batch: int) -> None:
        """Point the context at the profile of `batch` frames. After a profile switch every
        input shape must be set again (IExecutionContext::setOptimizationProfileAsync); the
        addresses are set again too, so the context never holds another profile's binding."""
        if batch == self._batch:
            return
        self._batch = 0
        context, (height, width) = self._context, self.input_size
        if self.max_batch > 1 and not context.set_optimization_profile_async(
                batch - 1, self._stream):
            raise EngineLoadError(f"TensorRT refused optimisation profile {batch - 1} "
                                  f"(batch {batch})")
        if not context.set_input_shape(INPUT_NAME, (batch, height, width, 3)):
            raise EngineLoadError(f"the engine does not accept {batch} frame(s) of "
                                  f"{width}x{height}")
        for binding in plan_bindings(self._tensors, height, width, batch):
            actual = tuple(int(d) for d in context.get_tensor_shape(binding.name))
            if actual != binding.shape:
                raise EngineLoadError(f"engine tensor '{binding.name}' has shape {actual}, "
                                      f"expected {binding.shape}")
            if not context.set_tensor_address(binding.name, self._device[binding.name]):
                raise EngineLoadError(f"TensorRT refused the device address of tensor "
                                      f"'{binding.name}'")
        self._batch = batch

    def infer(self, rgb: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        return self.infer_batch([rgb], want_confidence)[0]

    def infer_batch(self, frames: list[np.ndarray], want_confidence: bool = False
                    ) -> list[SegmentationResult]:
        """Frames of this runner's input size, at most max_batch, as one inference."""
        count = len(frames)
        if not 1 <= count <= self.max_batch:
            raise ValueError(f"{count} frames in one inference, this engine takes 1 to "
                             f"{self.max_batch}")
        cuda, stream = self._cuda, self._stream
        self._select(count)
        staging = self._host[INPUT_NAME]
        for index, rgb in enumerate(frames):
            np.copyto(staging[index], rgb)
        # Only the first `count` frames travel: the batch axis is the outermost one.
        cuda.copy_to_device(self._device[INPUT_NAME], staging[:count], stream)
        if not self._context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        labels = self._host[LABELS_OUTPUT][:count]
        cuda.copy_to_host(labels, self._device[LABELS_OUTPUT], stream)
        confidence = None
        if want_confidence and self.has_confidence:
            confidence = self._host[CONFIDENCE_OUTPUT][:count]
            cuda.copy_to_host(confidence, self._device[CONFIDENCE_OUTPUT], stream)
        cuda.stream_synchronize(stream)
        return [SegmentationResult(labels=labels[i].copy(),
                                   confidence=None if confidence is None else
                                   confidence[i].copy())
                for i in range(count)]

    def close(self) -> None:
        for pointer in self._device.values():
            self._cuda.free(pointer)
        self._device.clear()
        for array in getattr(self, "_host", {}).values():
            self._cuda.free_host_array(array)
        self._host = {}
        if self._stream is not None:
            self._cuda.stream_destroy(self._stream)
            self._stream = None


# --- backend -------------------------------------------------------------------------------

class TensorRTBackend:
    """A contract model on TensorRT: from an ONNX file (engines baked and cached per input
    size) or from a baked ``.engine`` with its sidecar."""

    name = "tensorrt"
    # Assumed, not measured here (no TensorRT on the development machines): a GPU runs a small
    # batch in about the time of one frame, which is why TensorRT engines get batch profiles.
    batching_pays = True

    def __init__(self, model_path: str | Path, precision: str = "fp16",
                 cache_dir: str | Path | None = None, allow_build: bool = True,
                 calibration_dir: str | Path | None = None,
                 input_size: tuple[int, int] | None = None,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB, report: Report | None = None,
                 trt=None, cuda=None, cancel: threading.Event | None = None,
                 max_batch: int = 1, self_check: str = "refuse",
                 onnx_model: OnnxModel | None = None) -> None:
        # onnx_model: the ONNX file already parsed (load_backend parses it once for everyone)
        self._parsed = onnx_model
        self._report = report or (lambda line: None)
        self._self_check_policy = check_policy(self_check)
        self.self_check: SelfCheckResult | None = None
        self.self_check_note = "off" if self_check == "off" else "no engine loaded yet"
        if not (isinstance(max_batch, int) and 1 <= max_batch <= MAX_BATCH):
            raise ValueError(f"max_batch must be an integer in 1..{MAX_BATCH}, got {max_batch}")
        self.max_batch = max_batch
        self._trt = trt if trt is not None else import_tensorrt()
        if cuda is None:
            from textseg.engine.cuda_runtime import CudaUnavailable, load_cuda_runtime

            try:
                cuda = load_cuda_runtime()
            except CudaUnavailable as exc:
                raise TensorRTUnavailable(str(exc)) from None
        self._cuda = cuda
        self.facts = platform_facts(self._trt, cuda)
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.allow_build = allow_build
        self.calibration_dir = Path(calibration_dir) if calibration_dir else None
        self.workspace_mib = workspace_mib
        self._runners: dict[tuple[int, int], EngineRunner] = {}
        self._calibration_digests: dict[tuple[int, int], str] = {}
        self.engine_paths: dict[tuple[int, int], Path] = {}
        self._fixed_size: tuple[int, int] | None = None
        self._default_size: tuple[int, int] | None = None
        self._resize_warned: set[tuple[int, int]] = set()
        self._cancel = cancel if cancel is not None else threading.Event()
        self.plan: BuildPlan | None = None  # None for a baked engine used as it is
        path = Path(model_path)
        if path.suffix == ENGINE_SUFFIX:
            self._open_engine_file(path)
        else:
            self._open_onnx(path)
        if self._fixed_size is None:
            # Which path builds this model's engines, refused now rather than at the first frame.
            self.plan = plan_build(tensorrt_major(self._trt), self.precision,
                                   self.onnx_precision)
            if self.plan.calibrate and self.calibration_dir is None:
                raise EngineBuildError("precision int8 from an fp32 model needs calibration "
                                       "images (calibration_dir), or a Q/DQ model from "
                                       "`textseg quantize`")
        size = input_size or self._default_size
        if size is not None and self._fixed_size is None:
            self.prepare(*size)

    def _open_onnx(self, path: Path) -> None:
        # parsed once: described, precision and rules read
        model, self._parsed = self._parsed or read_onnx_model(path), None
        described = describe_model(model)
        self.model_path, self.onnx_path = path, path
        self.onnx_sha256 = described.sha256
        self.onnx_precision = model_precision(model)  # it picks the build path
        # Refused before a build (not before reusing an engine built from the file).
        self._parser_rule_violations = check_tensorrt_rules(model)
        self.info, self.has_confidence = described.info, described.has_confidence
        self._metadata = described.info.to_metadata()
        if self.max_batch > 1 and not described.dynamic_batch:
            self._report(f"{path.name} fixes its batch axis at 1 (exported before textseg 0.3): "
                         f"frames run one per inference, not {self.max_batch}; re-export it "
                         "to batch cameras")
            self.max_batch = 1

    def _open_engine_file(self, path: Path) -> None:
        """A baked engine given directly: it must match this machine, else it is rebuilt from
        the ONNX file its sidecar names (when that file is still there and unchanged)."""
        if not path.is_file():
            raise FileNotFoundError(f"engine file not found: {path}")
        record = read_record(path)
        problem = verify_engine_file(path, record)
        wanted = EngineKey.for_platform(record.key.onnx_sha256, self.facts,
                                        record.key.precision, record.key.input_size,
                                        record.key.calibration_sha256, record.key.max_batch)
        if not problem and wanted.differences(record.key):
            problem = (f"it was built for {record.key.platform.describe()}, this machine has "
                       f"{self.facts.describe()}")
        runner = None
        if not problem:
            try:
                runner = self._load(path.read_bytes(), record.key.input_size,
                                    record.key.max_batch)
            except EngineLoadError as exc:
                problem = str(exc)
        if runner is None:
            onnx = Path(record.onnx_path) if record.onnx_path else None
            if onnx is not None and onnx.is_file() and self.allow_build:
                self._report(f"engine {path.name} cannot be used ({problem}); rebuilding it "
                             f"from {onnx} into {self.cache_dir}")
                self.precision = record.key.precision
                self._default_size = record.key.input_size
                self.max_batch = record.key.max_batch
                self._open_onnx(onnx)
                if self.onnx_sha256 != record.key.onnx_sha256:
                    self._report(f"note: {onnx} changed since {path.name} was baked")
                return
            raise EngineCacheError(
                f"engine {path} cannot be used: {problem}. Re-bake it on this machine with "
                f"`textseg bake {record.onnx_path or 'MODEL.onnx'}`")
        self.model_path, self.onnx_path = path, None
        self.onnx_sha256 = record.key.onnx_sha256
        self.precision = record.key.precision
        self.info = ModelInfo.from_metadata(record.model_metadata, source=str(path))
        self.has_confidence = record.has_confidence
        self._metadata = record.model_metadata
        self._fixed_size = record.key.input_size
        self.max_batch = record.key.max_batch  # what the baked engine was built for
        self._runners[self._fixed_size] = runner
        self.engine_paths[self._fixed_size] = path
        self._check_engine(runner, self._fixed_size, path)

    @property
    def description(self) -> str:
        sizes = ", ".join(f"{w}x{h}" for h, w in self._runners) or "none loaded yet"
        batches = f", batch 1-{self.max_batch}" if self.max_batch > 1 else ""
        return (f"tensorrt {self.precision}{batches} ({self.facts.describe()}; engines: "
                f"{sizes})")

    def key_for(self, height: int, width: int) -> EngineKey:
        calibration = ""
        if self.precision == "int8" and self.plan is not None and self.plan.calibrate:
            calibration = self._calibration_digests.get((height, width)) or ""
            if not calibration:
                calibration = CalibrationImages(self.calibration_dir, (height, width)).digest()
                self._calibration_digests[(height, width)] = calibration
        return EngineKey.for_platform(self.onnx_sha256, self.facts, self.precision,
                                      (height, width), calibration, self.max_batch)

    def _load(self, engine_bytes: bytes, size: tuple[int, int],
              max_batch: int | None = None) -> EngineRunner:
        return EngineRunner(self._trt, self._cuda, engine_bytes, size, self._report,
                            max_batch or self.max_batch)

    def prepare(self, height: int, width: int, force: bool = False) -> EngineRunner:
        """The engine for this input size: cached, else built (and cached). `force` rebuilds
        even a usable cached engine (`textseg bake --force`)."""
        size = (int(height), int(width))
        if size in self._runners and not force:
            return self._runners[size]
        if self._fixed_size is not None:
            return self._runners[self._fixed_size]
        key = self.key_for(*size)
        stem = self.onnx_path.stem
        hint = str(self.onnx_path)
        plan = plan_engine(self.cache_dir, stem, key, self.allow_build or force, hint)
        if force and plan.action == "reuse":
            plan = EnginePlan("build", plan.engine_path, "a rebuild was forced")
        runner = None
        if plan.action == "reuse":
            try:
                runner = self._load(plan.engine_path.read_bytes(), size)
                self._report(f"TensorRT engine {plan.engine_path} reused ({key.describe()})")
            except EngineLoadError as exc:
                if not self.allow_build:
                    raise EngineCacheError(f"cached engine {plan.engine_path} cannot be "
                                           f"loaded: {exc}") from None
                self._report(f"cached engine {plan.engine_path.name} cannot be loaded ({exc}); "
                             "rebuilding it")
        if runner is None:
            with build_lock(plan.engine_path):
                # Another process may have built it while this one waited for the lock.
                again = plan_engine(self.cache_dir, stem, key, True, hint)
                if again.action == "reuse" and plan.action == "build" and not force:
                    runner = self._load(again.engine_path.read_bytes(), size)
                    self._report(f"TensorRT engine {again.engine_path} built by another "
                                 "process; reused")
                else:
                    runner = self._build(plan.engine_path, key, plan.reason)
        previous = self._runners.get(size)
        if previous is not None and previous is not runner:
            previous.close()
        self._runners[size] = runner
        self.engine_paths[size] = plan.engine_path
        self._check_engine(runner, size, plan.engine_path)
        return runner

    def _check_engine(self, runner: EngineRunner, size: tuple[int, int], engine: Path) -> None:
        """The model's stored self-check on a freshly loaded engine, at the engine's size."""
        if self._self_check_policy == "off":
            return
        stored = read_self_check(self._metadata, str(self.model_path))
        if stored is None:
            self.self_check_note = NOT_STORED
            return
        onnx_precision = getattr(self, "onnx_precision", "fp32")
        precision = ("int8" if "int8" in (self.precision, onnx_precision) else
                     "fp16" if "fp16" in (self.precision, onnx_precision) else "fp32")
        result = run_self_check(
            lambda frames: [r.labels for r in runner.infer_batch(frames)], stored, precision,
            f"tensorrt {getattr(self._trt, '__version__', '?')} {self.precision} "
            f"({self.facts.describe()})", size)
        self.self_check, self.self_check_note = result, result.describe()
        self._report(f"engine {engine.name}: {result.describe()}")
        advice = (f"the engine {engine} computes wrong labels. Rebuild it (`textseg bake "
                  f"{self.onnx_path or 'MODEL.onnx'} --precision {self.precision} --force`; "
                  "a corrupt cache or a bad int8 calibration is fixed that way); if a fresh "
                  "engine fails too, this TensorRT build is wrong for the model at "
                  f"{self.precision}: use precision fp32 or the fp32 model, and report it")
        made = where_made(self._metadata) if precision == "int8" else None
        if made is not None and not made["passed"]:  # the int8 file, not the engine
            advice = f"{self.onnx_path or 'the model'}: {int8_advice(self._metadata)}"
        try:
            enforce(result, engine, self._self_check_policy, advice, self._report)
        except SelfCheckFailed:
            self._runners.pop(size, None)  # never used for frames
            runner.close()
            raise

    def _build(self, engine_path: Path, key: EngineKey, reason: str) -> EngineRunner:
        # The parser's documented rules first: a clear list instead of a failed build.
        refuse_violations(self._parser_rule_violations, str(self.onnx_path))
        self._report(f"building TensorRT engine ({key.describe()}) because {reason}; "
                     "this takes minutes, once per model, precision, size and GPU")
        started = time.monotonic()
        calibrator = None
        plan = self.plan
        if plan.calibrate:
            images = CalibrationImages(self.calibration_dir, key.input_size)
            cache = engine_path.with_name(calibration_cache_filename(
                self.onnx_path.stem, key))
            calibrator = make_calibrator(self._trt, self._cuda, images, cache, self._report)
        try:
            engine = build_serialized_engine(self._trt, self.onnx_path, plan,
                                             key.input_size, self._report, calibrator,
                                             self.workspace_mib, self._cancel,
                                             key.max_batch)
        finally:
            if calibrator is not None:
                calibrator.release()
        seconds = time.monotonic() - started
        record = store_engine(engine_path, engine, EngineRecord(
            key=key, engine_sha256="", engine_size=0, model_metadata=self._metadata,
            has_confidence=self.has_confidence, onnx_path=str(self.onnx_path.resolve()),
            build_seconds=round(seconds, 1), textseg_version=__version__,
            extra={"build_path": plan.path, "builder_flags": list(plan.flags),
                   "tensorrt_major": tensorrt_major(self._trt),
                   "onnx_precision": self.onnx_precision,
                   "batch_profiles": list(range(1, key.max_batch + 1))}))
        self._report(f"TensorRT engine written to {engine_path} ({record.engine_size >> 20} MiB, "
                     f"{seconds:.0f} s)")
        try:
            return self._load(engine, key.input_size)
        except EngineLoadError as exc:  # a fresh engine that does not load: no retry loop
            raise EngineLoadError(f"the engine just built cannot be loaded: {exc}") from None

    def cancel_builds(self) -> None:
        """Stop an engine build in progress (its progress monitor returns False) and any later
        one; called when the node shuts down while a build runs (builds take minutes)."""
        self._cancel.set()

    def prepare_confidence(self) -> None:
        """Nothing to prepare: every engine computes the confidence output with the labels;
        only copying it back is skipped when a frame does not want it."""

    def infer(self, rgb: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        return self.infer_batch([rgb], want_confidence)[0]

    def infer_batch(self, frames: list[np.ndarray], want_confidence: bool = False
                    ) -> list[SegmentationResult]:
        """Frames of one size as one inference (at most max_batch)."""
        batch = check_batch(frames, self.max_batch)
        size = batch.shape[1:3]
        if self._fixed_size is not None and size != self._fixed_size:
            # A baked engine has one input size: resize to it and the labels back.
            height, width = self._fixed_size
            if size not in self._resize_warned:
                self._resize_warned.add(size)
                self._report(f"frames are {size[1]}x{size[0]} but engine {self.model_path.name} "
                             f"was baked for {width}x{height}: each frame is resized (bake one "
                             "for this size to avoid it)")
            small = [cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
                     for rgb in batch]
            results = self._runners[self._fixed_size].infer_batch(small, want_confidence)
            back = (size[1], size[0])
            return [SegmentationResult(
                labels=cv2.resize(r.labels, back, interpolation=cv2.INTER_NEAREST),
                confidence=None if r.confidence is None else
                cv2.resize(r.confidence, back, interpolation=cv2.INTER_NEAREST))
                for r in results]
        runner = self._runners.get(size) or self.prepare(*size)
        return runner.infer_batch(list(batch), want_confidence)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
