"""The model artifact contract: one ONNX file hands a model from training to deployment.

Graph
    input  ``image``       uint8 [N, H, W, 3], RGB, any H and W (dynamic axes); N is dynamic
                           (several cameras in one inference), or fixed at 1 in models exported
                           before version 0.3.
    output ``labels``      uint8 [N, H, W] class ids at the input resolution.
    output ``confidence``  uint8 [N, H, W] (optional) max softmax probability * 255.

Normalisation, resizing to the network resolution, bilinear upsampling of the logits and the
argmax all live inside the graph, so no per-pixel work is left to the caller.

Metadata (ONNX ``metadata_props``, all strings, JSON where structured) is described by
:class:`ModelInfo`; this module is the single place that knows the key names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

CONTRACT_VERSION = 1
INPUT_NAME = "image"
LABELS_OUTPUT = "labels"
CONFIDENCE_OUTPUT = "confidence"
KEY_PREFIX = "textseg."
# Label value meaning "no class" on the label image (REP-style convention: the maximum value).
UNLABELLED = 255


class ContractError(ValueError):
    """A model file does not follow the textseg artifact contract."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything a deployment needs to know about a model, carried inside the artifact."""

    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    network_input_size: tuple[int, int]  # (height, width) the network runs at
    architecture: str = "unknown"
    dataset: str = "unknown"
    text_encoder: str = "none"
    training_stage: str = "untrained"
    eval_miou: float | None = None
    contract_version: int = CONTRACT_VERSION
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not self.class_names:
            problems.append("class_names is empty")
        if len(self.class_names) > UNLABELLED:
            problems.append(f"{len(self.class_names)} classes do not fit a mono8 label image")
        if len(self.palette) != len(self.class_names):
            problems.append(
                f"palette has {len(self.palette)} colours for {len(self.class_names)} classes"
            )
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            problems.append("palette entries must be [r, g, b] with values 0..255")
        h, w = self.network_input_size
        if h <= 0 or w <= 0:
            problems.append(f"network_input_size {self.network_input_size} is not positive")
        if self.contract_version != CONTRACT_VERSION:
            problems.append(
                f"contract version {self.contract_version} (this runtime reads version "
                f"{CONTRACT_VERSION})"
            )
        if problems:
            raise ContractError("invalid model metadata: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_metadata(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` (string to string)."""
        fields = asdict(self)
        extra = fields.pop("extra")
        meta = {KEY_PREFIX + k: json.dumps(v) for k, v in fields.items()}
        meta.update(extra)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "model") -> ModelInfo:
        """Parse ONNX ``metadata_props``; raise :class:`ContractError` naming what is wrong."""
        version_key = KEY_PREFIX + "contract_version"
        if version_key not in meta:
            raise ContractError(
                f"{source} is not a textseg model: its metadata has no '{version_key}' "
                "(export models with `textseg-train export`; a model of your own: "
                "`textseg import`)"
            )
        values = {}
        for name in ("class_names", "palette", "network_input_size", "architecture",
                     "dataset", "text_encoder", "training_stage", "eval_miou",
                     "contract_version"):
            key = KEY_PREFIX + name
            if key not in meta:
                if name in ("class_names", "palette", "network_input_size"):
                    raise ContractError(f"{source}: required metadata '{key}' is missing")
                continue
            try:
                values[name] = json.loads(meta[key])
            except json.JSONDecodeError as exc:
                raise ContractError(f"{source}: metadata '{key}' is not valid JSON: {exc}") from exc
        names, palette = values["class_names"], values["palette"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ContractError(f"{source}: metadata class_names must be a JSON list of strings")
        if not isinstance(palette, list) or not all(
                isinstance(c, list) and all(isinstance(v, int) for v in c) for c in palette):
            raise ContractError(f"{source}: metadata palette must be a JSON list of [r, g, b]")
        try:
            info = cls(
                class_names=tuple(values.pop("class_names")),
                palette=tuple(tuple(int(v) for v in c) for c in values.pop("palette")),
                network_input_size=tuple(int(v) for v in values.pop("network_input_size")),
                extra={k: v for k, v in meta.items() if not k.startswith(KEY_PREFIX)},
                **values,
            )
        except ContractError as exc:
            raise ContractError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ContractError(f"{source}: malformed metadata: {exc}") from None
        return info


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph or an engine."""

    name: str
    dtype: str  # numpy-style name ("uint8"), or "type<N>" for others
    shape: tuple[int | str, ...]  # ints for fixed axes; a name, "?" or -1 for dynamic ones


def is_fixed(dim: int | str) -> bool:
    return isinstance(dim, int) and dim >= 0


@dataclass(frozen=True)
class Interface:
    """What a contract-conforming interface leaves open."""

    has_confidence: bool
    dynamic_batch: bool  # older models fix the batch axis at 1


def interface_problems(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
                       ) -> list[str]:
    """Every way these inputs and outputs (of a graph, its ONNX Runtime session or a TensorRT
    engine) break the contract's interface; empty when they follow it."""
    problems = []
    image = next((i for i in inputs if i.name == INPUT_NAME), None)
    if image is None or len(inputs) != 1:
        found = [(i.name, i.dtype) for i in inputs]
        problems.append(f"expected one input '{INPUT_NAME}', found {found}")
    elif image.dtype != "uint8":
        found = [(i.name, i.dtype) for i in inputs]
        problems.append(f"expected a uint8 input '{INPUT_NAME}', found {found}: the image must "
                        "be uint8 RGB, as cameras send it")
    elif (len(image.shape) != 4 or image.shape[3] != 3
          or (is_fixed(image.shape[0]) and image.shape[0] != 1)):
        problems.append(f"input '{INPUT_NAME}' must be [N, H, W, 3] with N dynamic or 1, is "
                        f"{list(image.shape)}")
    by_name = {o.name: o for o in outputs}
    labels = by_name.get(LABELS_OUTPUT)
    if labels is None:
        problems.append(f"expected a uint8 [N, H, W] output '{LABELS_OUTPUT}', there is no "
                        f"output '{LABELS_OUTPUT}'")
    elif labels.dtype != "uint8" or len(labels.shape) != 3:
        why = (f": output '{LABELS_OUTPUT}' must be uint8 class ids (a mono8 label image)"
               if labels.dtype != "uint8" else "")
        problems.append(f"expected a uint8 [N, H, W] output '{LABELS_OUTPUT}', found "
                        f"{labels.dtype} {list(labels.shape)}{why}")
    confidence = by_name.get(CONFIDENCE_OUTPUT)
    if confidence is not None and (confidence.dtype != "uint8" or len(confidence.shape) != 3):
        problems.append(f"output '{CONFIDENCE_OUTPUT}' must be uint8 [N, H, W], is "
                        f"{confidence.dtype} {list(confidence.shape)}")
    return problems


def check_interface(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                    source: str) -> Interface:
    """The interface's open choices; ContractError naming every problem unless it follows the
    contract."""
    problems = interface_problems(inputs, outputs)
    if problems:
        raise ContractError(f"{source}: " + "; ".join(problems))
    return Interface(has_confidence=any(o.name == CONFIDENCE_OUTPUT for o in outputs),
                     dynamic_batch=not is_fixed(inputs[0].shape[0]))
