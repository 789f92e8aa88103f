"""The one place that works around a torchvision / torch build mismatch.

Why: the registry's torchvision 0.28.0 wheel is a CUDA build. Paired with the CPU torch wheel,
its compiled ops library does not load, and `import torchvision` then fails while registering
fake kernels: ``RuntimeError: operator torchvision::nms does not exist``. open_clip, timm and
transformers' model modules import torchvision, so no text encoder could even be built.

Fix: declare the two operator *schemas* torchvision registers fake kernels for (nms, qnms), then
import again. Nothing in the text side calls these ops; they only have to exist. With a matching
torch / torchvision pair (e.g. a GPU user's CUDA builds) the first import succeeds and this
module changes nothing.
"""

from __future__ import annotations

import importlib
import logging
import sys

import torch

_LOG = logging.getLogger(__name__)

# The exact error a mismatched pair raises; anything else is a real failure and propagates.
_MISSING_OP_MESSAGE = "operator torchvision::nms does not exist"

# The signatures torchvision's compiled library would have declared.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)

# Kept at module level: the definitions are removed when the Library object is destroyed.
_TORCHVISION_LIB: torch.library.Library | None = None


def _forget_torchvision_modules() -> None:
    """Drop the half-imported torchvision submodules so the next import starts clean."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision_importable() -> None:
    """Make `import torchvision` work; a no-op when it already does.

    Call before the first `import open_clip` / transformers model import. Raises the original
    error for any failure other than the known missing-operator one; returns quietly when
    torchvision is not installed at all.
    """
    global _TORCHVISION_LIB
    try:
        importlib.import_module("torchvision")
        return
    except ImportError:
        return  # not installed: nothing to repair (transformers works without it)
    except RuntimeError as exc:
        if _MISSING_OP_MESSAGE not in str(exc) or _TORCHVISION_LIB is not None:
            raise
    _LOG.info("torchvision's compiled ops do not match this torch; declaring nms/qnms schemas")
    _forget_torchvision_modules()
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        lib.define(schema)
    _TORCHVISION_LIB = lib
    importlib.import_module("torchvision")


def torchvision_workaround_applied() -> bool:
    """True when this process needed (and applied) the schema workaround."""
    return _TORCHVISION_LIB is not None
