"""Inference engines behind one interface, and the model artifact contract they load."""

from __future__ import annotations

import sys
from pathlib import Path

from textseg.engine.backend import SegmentationBackend, SegmentationResult
from textseg.engine.contract import ContractError, ModelInfo

BACKENDS = ("auto", "onnxruntime")
DEFAULT_MODEL_FILENAME = "textseg_default.onnx"

__all__ = ["BACKENDS", "ContractError", "ModelInfo", "SegmentationBackend",
           "SegmentationResult", "default_model_path", "load_backend"]


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


def load_backend(model: str | Path = "", backend: str = "auto", threads: int = 0
                 ) -> SegmentationBackend:
    """Open `model` (default artifact when empty) with the requested backend."""
    path = Path(model) if str(model) else default_model_path()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        hint = (" (the default model is created by the set-up script; or pass model:=PATH)"
                if not str(model) else "")
        raise FileNotFoundError(f"model file not found: {path}{hint}")
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=threads)
