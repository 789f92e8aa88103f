"""The text side of the method: frozen text encoders, CoOp prompt learning, cached embeddings.

Importing this package is cheap: open_clip / transformers load only when an encoder is built.
"""

from .cache import cache_key, cache_path, class_embeddings
from .controls import (
    TEXT_CONTROLS,
    fixed_derangement,
    permuted_embeddings,
    permuted_embeddings_identity,
    random_embeddings_identity,
    random_text_encoder,
    random_unit_embeddings,
)
from .encoders import (
    NO_CLIP_WEIGHTS,
    TEXT_ENCODERS,
    ClipTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    build_text_encoder,
    packaged_minilm_dir,
    read_clip_state_dict,
)
from .prompts import PromptLearner
from .torchvision_compat import ensure_torchvision_importable, torchvision_workaround_applied

__all__ = [
    "NO_CLIP_WEIGHTS",
    "TEXT_CONTROLS",
    "TEXT_ENCODERS",
    "ClipTextEncoder",
    "MiniLMTextEncoder",
    "PromptLearner",
    "TextEncoder",
    "build_text_encoder",
    "cache_key",
    "cache_path",
    "class_embeddings",
    "ensure_torchvision_importable",
    "fixed_derangement",
    "packaged_minilm_dir",
    "permuted_embeddings",
    "permuted_embeddings_identity",
    "random_embeddings_identity",
    "random_text_encoder",
    "random_unit_embeddings",
    "read_clip_state_dict",
    "torchvision_workaround_applied",
]
