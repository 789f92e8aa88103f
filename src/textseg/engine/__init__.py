"""Inference engines behind one interface, and the model artifact contract they load."""

from __future__ import annotations

import sys
from pathlib import Path

from textseg.engine.backend import BackendOptions, SegmentationBackend, SegmentationResult
from textseg.engine.contract import ContractError, ModelInfo
from textseg.engine.engine_cache import PRECISIONS

BACKENDS = ("auto", "tensorrt", "onnxruntime")
DEFAULT_MODEL_FILENAME = "textseg_default.onnx"

__all__ = ["BACKENDS", "PRECISIONS", "BackendOptions", "ContractError", "ModelInfo",
           "SegmentationBackend", "SegmentationResult", "choose_backend", "default_model_path",
           "load_backend", "package_share_dir", "tensorrt_problem"]


def package_share_dir() -> Path:
    """Where config/, launch/ and models/ live for this install.

    Under ROS (colcon install) the ament index knows share/textseg; from a source checkout
    (the project's .venv uses an editable install) it is the checkout itself; a plain pip
    install puts the data files under the Python prefix.
    """
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("textseg"))
    except (ImportError, LookupError, OSError):  # not built by colcon / no AMENT_PREFIX_PATH
        pass
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "package.xml").is_file() and (checkout / "src" / "textseg").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "textseg"


def default_model_path() -> Path:
    """The project's default artifact, used when the node is given no `model`."""
    return package_share_dir() / "models" / DEFAULT_MODEL_FILENAME


def tensorrt_problem() -> str | None:
    """None when TensorRT and a CUDA GPU are usable here, else why not (one line)."""
    from textseg.engine.cuda_runtime import CudaUnavailable, load_cuda_runtime
    from textseg.engine.tensorrt_backend import TensorRTUnavailable, import_tensorrt

    try:
        import_tensorrt()
        if load_cuda_runtime().device_count() < 1:
            return "no CUDA GPU is visible"
    except (TensorRTUnavailable, CudaUnavailable) as exc:
        return str(exc)
    return None


def choose_backend(requested: str, model: str | Path = "", onnx_model=None) -> tuple[str, str]:
    """(backend name, why) for `requested` in BACKENDS; `auto` picks TensorRT when it and a
    GPU are usable, else ONNX Runtime (which itself uses CUDA when its build has it).
    `onnx_model`: `model` already parsed (engine.onnx_file.OnnxModel), not read again."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend '{requested}': choose one of {', '.join(BACKENDS)}")
    is_engine = Path(str(model)).suffix == ".engine"
    if requested == "onnxruntime" and is_engine:
        raise ValueError(f"{model} is a TensorRT engine: use backend tensorrt (or auto), or "
                         "give the ONNX file to run it with ONNX Runtime")
    if requested != "onnxruntime" and not is_engine and Path(str(model)).is_file():
        from textseg.engine.onnx_file import CPU_ONLY_TARGET, quantization_target, read_onnx_model

        try:
            target = quantization_target((onnx_model or read_onnx_model(model)).metadata)
        except ValueError:
            target = ""  # not readable as ONNX: the backend says so when it opens it
        if target == CPU_ONLY_TARGET:
            why = ("quantized for ONNX Runtime's CPU only (textseg quantize --target cpu: "
                   "uint8 activations, which TensorRT does not take)")
            if requested == "tensorrt":
                raise ValueError(f"{model} is {why}: use backend onnxruntime, or the TensorRT "
                                 "form (textseg quantize --target tensorrt)")
            return "onnxruntime", f"auto: the model is {why}"
    if requested != "auto":
        return requested, "requested"
    problem = tensorrt_problem()
    if problem is None:
        return "tensorrt", "auto: TensorRT and a CUDA GPU are available"
    if is_engine:
        raise ValueError(f"{model} is a TensorRT engine but TensorRT cannot run here: {problem}")
    import onnxruntime

    providers = [p for p in onnxruntime.get_available_providers()
                 if p in ("CUDAExecutionProvider", "CPUExecutionProvider")]
    return "onnxruntime", f"auto: ONNX Runtime {providers}; TensorRT is not usable: {problem}"


def load_backend(model: str | Path = "", options: BackendOptions | None = None
                 ) -> SegmentationBackend:
    """Open `model` (default artifact when empty) with the backend `options` ask for
    (BackendOptions() when None: auto, each option at its default)."""
    options = options or BackendOptions()
    backend, precision = options.backend, options.precision
    path = Path(model) if str(model) else default_model_path()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}': choose one of "
                         f"{', '.join(PRECISIONS)}")
    if not path.is_file():
        hint = (" (the default model ships in models/ of the repository; or pass model:=PATH)"
                if not str(model) else "")
        raise FileNotFoundError(f"model file not found: {path}{hint}")
    onnx_model = None
    if path.suffix != ".engine":  # parsed once, here, for the choice and the backend
        from textseg.engine.onnx_file import read_onnx_model

        try:
            onnx_model = read_onnx_model(path)
        except ValueError:
            pass  # not readable as ONNX: the backend says so, in its own words
    name, _ = choose_backend(backend, path, onnx_model)
    if name == "tensorrt":
        from textseg.engine.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, precision=precision, cache_dir=options.cache_dir or None,
                               allow_build=options.allow_build,
                               calibration_dir=options.calibration_dir or None,
                               input_size=options.input_size, report=options.report,
                               cancel=options.cancel, max_batch=options.max_batch,
                               self_check=options.self_check, onnx_model=onnx_model)
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=options.threads, spin_wait=options.spin_wait,
                              self_check=options.self_check, report=options.report,
                              onnx_model=onnx_model)
