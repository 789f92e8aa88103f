"""Building a TensorRT engine (TensorRT 10.x and 11.x Python APIs) from a contract ONNX file.

Two API generations. TensorRT 11 builds strongly typed networks only: `BuilderFlag.FP16` /
`INT8`, `IInt8EntropyCalibrator2`, `int8_calibrator` and `set_calibration_profile` are gone, so
precision comes from the ONNX itself (an fp16 model, or a Q/DQ int8 model from `textseg
quantize`). TensorRT 10 builds those the same strongly typed way, and an fp32 model either in
fp32 or with the builder flags (fp16; int8 with a calibrator, deprecated since 10.1).
`plan_build` makes that choice (pure, tested), and the engine's sidecar records which path
built it. `precision` always means the precision the engine computes in.

Build: ``Builder`` -> ``NetworkDefinition`` filled by ``OnnxParser`` -> ``BuilderConfig``
(FP16 / INT8 flags, an ``IInt8EntropyCalibrator2`` fed from a folder of images, a progress
monitor) with one optimisation profile min = opt = max = the camera size per batch size
1..max_batch (the contract's N, H and W are dynamic; a profile pinned to one shape runs as fast
as a static engine) -> ``build_serialized_network``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.engine.calibration import CalibrationImages
from textseg.engine.contract import INPUT_NAME
from textseg.fileio import atomic_write_bytes

DEFAULT_WORKSPACE_MIB = 0  # 0: TensorRT's default (the device's memory)

Report = Callable[[str], None]


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


class EngineBuildCancelled(EngineBuildError):
    """The build was stopped by `cancel_builds()` (the node is shutting down)."""


# --- which build path (pure, tested without TensorRT) ---------------------------------------

@dataclass(frozen=True)
class BuildPlan:
    """How an engine is built: `strongly-typed` (precision from the ONNX's own types and Q/DQ
    nodes) or `builder-flags` (TensorRT 10 only: an fp32 ONNX with FP16 / INT8 flags)."""

    path: str
    flags: tuple[str, ...] = ()  # BuilderFlag names (builder-flags path)
    calibrate: bool = False  # implicit int8 with IInt8EntropyCalibrator2 (TensorRT 10)


def plan_build(major: int, precision: str, onnx_precision: str) -> BuildPlan:
    """The build path for an engine of `precision` from an ONNX model of `onnx_precision`."""
    if onnx_precision in ("fp16", "int8"):
        if precision != onnx_precision:
            raise EngineBuildError(
                f"this model carries its precision ({onnx_precision}"
                f"{' Q/DQ' if onnx_precision == 'int8' else ''}): bake it with precision "
                f"{onnx_precision}, or bake the fp32 model for {precision}")
        return BuildPlan("strongly-typed")
    if precision == "fp32":
        return BuildPlan("strongly-typed" if major >= 11 else "builder-flags")
    if major >= 11:
        how = ("an fp16 ONNX model (textseg fp16 MODEL.onnx)" if precision == "fp16" else
               "a Q/DQ int8 ONNX model (textseg quantize MODEL.onnx --calibration DIR)")
        raise EngineBuildError(f"TensorRT {major} builds strongly typed networks only: an "
                               f"{precision} engine needs {how}")
    if precision == "fp16":
        return BuildPlan("builder-flags", ("FP16",))
    # int8 layers fall back to fp16, not fp32; the calibrator API is deprecated since 10.1.
    return BuildPlan("builder-flags", ("FP16", "INT8"), calibrate=True)


# --- build ---------------------------------------------------------------------------------

_LOGGERS: dict[int, object] = {}  # one TensorRT logger per process (per tensorrt module)
_LOG_TARGETS: list[Report] = []


def tensorrt_logger(trt, report: Report | None):
    """The process's one ILogger (TensorRT keeps a global logger: creating several warns and
    mixes their output); messages go to the latest `report` given."""
    if report is not None:
        _LOG_TARGETS[:] = [report]
    logger = _LOGGERS.get(id(trt))
    if logger is not None:
        return logger

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:
            if severity in loud and _LOG_TARGETS:
                _LOG_TARGETS[0](f"TensorRT: {msg}")

    levels = trt.ILogger.Severity
    loud = {levels.INTERNAL_ERROR, levels.ERROR, levels.WARNING}
    logger = _LOGGERS[id(trt)] = _Logger()
    return logger


def _make_progress_monitor(trt, report: Report, every_s: float = 5.0,
                           cancel: threading.Event | None = None):
    """Build progress as log lines: each phase's start and end, steps at most every 5 s; a set
    `cancel` event makes `step_complete` return False, which cancels the build."""

    class _Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._steps: dict[str, int] = {}
            self._last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            self._steps[phase_name] = num_steps
            if parent_phase is None:
                report(f"engine build: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step) -> bool:
            now = time.monotonic()
            if now - self._last >= every_s:
                self._last = now
                report(f"engine build: {phase_name} {step + 1}/{self._steps.get(phase_name, '?')}")
            return not (cancel is not None and cancel.is_set())  # False cancels the build

        def phase_finish(self, phase_name) -> None:
            self._steps.pop(phase_name, None)

    return _Progress()


def make_calibrator(trt, cuda, images: CalibrationImages, cache_path: Path, report: Report):
    """IInt8EntropyCalibrator2 fed one frame at a time from a folder, with a calibration
    cache so an int8 rebuild (e.g. after a TensorRT upgrade) skips the slow pass."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            height, width = images.input_size
            self._nbytes = height * width * 3
            self._device = cuda.malloc(self._nbytes)
            self._pinned = cuda.host_array((1, height, width, 3))
            self._stream = cuda.stream_create()
            self._index = 0
            self.error: Exception | None = None  # re-raised after the build

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self._index >= len(images) or self.error is not None:
                return None
            try:
                batch = images.batch(self._index)
            except Exception as exc:  # TensorRT would end calibration here, silently
                self.error = exc
                return None
            self._index += 1
            if self._index % 50 == 0 or self._index == len(images):
                report(f"int8 calibration: {self._index}/{len(images)} images")
            np.copyto(self._pinned, batch)
            cuda.copy_to_device(self._device, self._pinned, self._stream)
            cuda.stream_synchronize(self._stream)
            return [self._device]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

        def release(self) -> None:
            cuda.free(self._device)
            cuda.free_host_array(self._pinned)
            cuda.stream_destroy(self._stream)

    return _Calibrator()


def build_serialized_engine(trt, onnx_path: Path, plan: BuildPlan, input_size: tuple[int, int],
                            report: Report, calibrator=None,
                            workspace_mib: int = DEFAULT_WORKSPACE_MIB,
                            cancel: threading.Event | None = None, max_batch: int = 1) -> bytes:
    """The serialized engine for `input_size` frames, with optimisation profile k (0-based)
    pinned to batch k + 1 for k < max_batch: min = opt = max, so each batch size runs with
    kernels chosen for exactly that shape (one TensorRT profile per batch size)."""
    logger = tensorrt_logger(trt, report)
    builder = trt.Builder(logger)
    flags = 0  # explicit batch is the only mode since TensorRT 10
    if plan.path == "strongly-typed":
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: " + "; ".join(errors))
    config = builder.create_builder_config()
    if workspace_mib > 0:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    height, width = input_size
    profiles = []
    for batch in range(1, max_batch + 1):
        shape = (batch, height, width, 3)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, shape, shape, shape)  # min = opt = max: the camera size
        if config.add_optimization_profile(profile) != batch - 1:
            raise EngineBuildError(f"TensorRT refused the optimisation profile for batch "
                                   f"{batch} at {width}x{height}")
        profiles.append(profile)
    for flag in plan.flags:  # builder-flags path only (TensorRT 10)
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.calibrate:
        if calibrator is None:
            raise EngineBuildError("an int8 engine from an fp32 model needs calibration images")
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profiles[0])  # the calibrator hands one frame a batch
    config.progress_monitor = _make_progress_monitor(trt, report, cancel=cancel)
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.error is not None:
        raise EngineBuildError(f"int8 calibration failed: {calibrator.error}") from None
    if cancel is not None and cancel.is_set():
        raise EngineBuildCancelled("the engine build was cancelled (shutdown)")
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT could not build an engine ({plan.path}) for {onnx_path} at "
            f"{width}x{height} (its messages are logged above)")
    return bytes(memoryview(serialized))
