"""Stage-1 class embeddings, computed once per (encoder weights, class list) and kept on disk.

Stage 1 trains with fixed text embeddings, so the text encoder should run once, not every
step (nor every run). The file is tiny ([K, width] float32 plus the key material) and is keyed
by a sha256 of the encoder identity (which hashes its weights) and the class names.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from textseg.fileio import atomic_write_bytes

from .encoders import TextEncoder


def cache_key(identity: str, class_names: Sequence[str]) -> str:
    """sha256 hex of the encoder identity and the ordered class names."""
    material = json.dumps([identity, list(class_names)], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def cache_path(encoder: TextEncoder, class_names: Sequence[str], cache_dir: Path) -> Path:
    key = cache_key(encoder.identity, class_names)
    return Path(cache_dir) / f"text-embeddings-{key[:32]}.pt"


def _read_cached(path: Path, identity: str, names: list[str], width: int) -> Tensor | None:
    """The cached tensor, or None (with a warning) when the file is unreadable or not ours."""
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
        embeddings = payload["embeddings"]
        # Re-check the key material: guards against truncated, foreign or edited files.
        if payload["identity"] != identity or list(payload["class_names"]) != names:
            raise ValueError("key material does not match")
        if not isinstance(embeddings, Tensor) or tuple(embeddings.shape) != (len(names), width):
            raise ValueError(f"unexpected embeddings {getattr(embeddings, 'shape', embeddings)}")
    except Exception as exc:  # any failure means: recompute and overwrite
        warnings.warn(f"text embedding cache {path} unusable ({exc}); recomputing", stacklevel=3)
        return None
    return embeddings.float()


def class_embeddings(
    encoder: TextEncoder, class_names: Sequence[str], cache_dir: Path
) -> Tensor:
    """`encoder.encode(class_names)` as float32 [K, width] on CPU, cached in `cache_dir`."""
    names = list(class_names)
    path = cache_path(encoder, names, cache_dir)
    if path.is_file():
        cached = _read_cached(path, encoder.identity, names, encoder.width)
        if cached is not None:
            return cached
    embeddings = encoder.encode(names).detach().float().cpu().contiguous()
    buffer = io.BytesIO()
    torch.save(
        {"identity": encoder.identity, "class_names": names, "embeddings": embeddings}, buffer
    )
    atomic_write_bytes(path, buffer.getvalue())
    return embeddings
