"""Read what a deployment needs from an ONNX file without onnx, onnxruntime or TensorRT.

The TensorRT path must know a model's metadata (class names, palette), interface and sha256
before (and without) building an engine, and a vehicle may have TensorRT but not the `onnx`
package. ONNX files are protobuf; this reads the few fields needed straight from the wire
format (``ModelProto``: ir_version 1, graph 7, metadata_props 14; ``GraphProto``: input 11,
output 12; ``ValueInfoProto``: name 1, type 2; ``TypeProto``: tensor_type 1;
``TypeProto.Tensor``: elem_type 1, shape 2; ``TensorShapeProto``: dim 1;
``Dimension``: dim_value 1, dim_param 2; ``StringStringEntryProto``: key 1, value 2).
Large fields (initializers, nodes) are skipped by length, never decoded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from textseg.engine.contract import (
    CONFIDENCE_OUTPUT,
    INPUT_NAME,
    LABELS_OUTPUT,
    ContractError,
    ModelInfo,
)

# onnx.TensorProto.DataType values used by the contract.
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 16: "bfloat16"}


class _WireError(ValueError):
    pass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy-style name ("uint8"), or "type<N>" for others
    shape: tuple[int | str, ...]  # ints for fixed axes, names (or "?") for dynamic ones


@dataclass(frozen=True)
class OnnxSummary:
    path: Path
    sha256: str
    size: int
    metadata: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ModelDescription:
    """A contract model as the runtime sees it: metadata, interface facts and identity."""

    path: Path
    sha256: str
    info: ModelInfo
    has_confidence: bool
    dynamic_batch: bool = False  # the batch axis is dynamic (older models fix it at 1)


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """Yield (field number, wire type, value) of one protobuf message; length-delimited values
    are memoryview slices (no copy)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise _WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise _WireError("field runs past the end of its message")
        yield number, wire, value


def _packed_varints(value) -> list[int]:
    """The unsigned values of a packed repeated varint field."""
    raw, pos, out = bytes(value), 0, []
    while pos < len(raw):
        number, pos = _varint(raw, pos)
        out.append(number)
    return out


def _tensor_dims(tensor) -> list[int]:
    """``TensorProto.dims`` (field 1), plain or packed."""
    dims: list[int] = []
    for number, wire, value in _fields(tensor):
        if number == 1 and wire == 0:
            dims.append(value)
        elif number == 1 and wire == 2:
            dims.extend(_packed_varints(value))
    return dims


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _field_bytes(number: int, wire: int, value) -> bytes:
    """One field re-encoded exactly as read by `_fields`."""
    if wire == 0:
        return _key(number, 0) + _encode_varint(value)
    if wire == 2:
        return _key(number, 2) + _encode_varint(len(value)) + bytes(value)
    return _key(number, wire) + bytes(value)  # fixed 64 / 32 bit


def _text(value) -> str:
    return bytes(value).decode("utf-8")


def _metadata_entry(entry) -> tuple[str, str]:
    """(key, value) of a StringStringEntryProto (ModelProto.metadata_props)."""
    key = val = ""
    for number, wire, value in _fields(entry):
        if number == 1 and wire == 2:
            key = _text(value)
        elif number == 2 and wire == 2:
            val = _text(value)
    return key, val


def _tensor_spec(value_info) -> TensorSpec:
    name, dtype, shape = "", "?", []
    for number, wire, value in _fields(value_info):
        if number == 1 and wire == 2:
            name = _text(value)
        elif number == 2 and wire == 2:  # TypeProto
            for t_number, t_wire, t_value in _fields(value):
                if t_number != 1 or t_wire != 2:  # only tensor types matter here
                    continue
                for f_number, f_wire, f_value in _fields(t_value):
                    if f_number == 1 and f_wire == 0:
                        dtype = ELEM_TYPES.get(f_value, f"type<{f_value}>")
                    elif f_number == 2 and f_wire == 2:
                        for d_number, d_wire, d_value in _fields(f_value):
                            if d_number != 1 or d_wire != 2:
                                continue
                            dim: int | str = "?"
                            for x_number, x_wire, x_value in _fields(d_value):
                                if x_number == 1 and x_wire == 0:
                                    dim = x_value
                                elif x_number == 2 and x_wire == 2:
                                    dim = _text(x_value)
                            shape.append(dim)
    return TensorSpec(name, dtype, tuple(shape))


def read_onnx_summary(path: str | Path) -> OnnxSummary:
    """Metadata, graph inputs/outputs, sha256 and size of an ONNX file.

    Raises FileNotFoundError for a missing file and ContractError for anything that is not a
    readable ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ContractError(f"{path} is not an ONNX model: the file is empty")
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        metadata: dict[str, str] = {}
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        seen_ir = seen_graph = False
        for number, wire, value in _fields(memoryview(data)):
            if number == 1 and wire == 0:
                seen_ir = True
            elif number == 7 and wire == 2:
                seen_graph = True
                for g_number, g_wire, g_value in _fields(value):
                    if g_number == 11 and g_wire == 2:
                        inputs.append(_tensor_spec(g_value))
                    elif g_number == 12 and g_wire == 2:
                        outputs.append(_tensor_spec(g_value))
            elif number == 14 and wire == 2:
                key, val = _metadata_entry(value)
                metadata[key] = val
    except (_WireError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path} is not an ONNX model (unreadable protobuf: {exc})"
                            ) from None
    if not seen_ir or not seen_graph:
        raise ContractError(f"{path} is not an ONNX model (no ir_version or graph)")
    # Initializers may also be listed as graph inputs in old exports; they are not ours.
    return OnnxSummary(path, sha256, size, metadata, tuple(inputs), tuple(outputs))


CPU_ONLY_TARGET = "onnxruntime-cpu"  # `textseg quantize --target cpu` records this


def quantization_target(metadata: dict[str, str]) -> str:
    """The `target` that `textseg quantize` recorded in a model's metadata: "tensorrt",
    CPU_ONLY_TARGET, or "" for a model it did not write."""
    try:
        return str(json.loads(metadata.get("quantization") or "{}").get("target", ""))
    except (ValueError, AttributeError):
        return ""


def check_contract_interface(summary: OnnxSummary) -> bool:
    """Raise ContractError unless the graph has the contract's input/outputs; return whether
    it has the optional confidence output."""
    source = str(summary.path)
    image = [i for i in summary.inputs if i.name == INPUT_NAME]
    if not image or image[0].dtype != "uint8":
        found = [(i.name, i.dtype) for i in summary.inputs]
        raise ContractError(f"{source}: expected a uint8 input '{INPUT_NAME}', found {found}")
    shape = image[0].shape
    if len(shape) != 4 or shape[3] != 3 or (isinstance(shape[0], int) and shape[0] != 1):
        raise ContractError(f"{source}: input '{INPUT_NAME}' must be [N, H, W, 3] with N "
                            f"dynamic or 1, is {list(shape)}")
    outputs = {o.name: o for o in summary.outputs}
    labels = outputs.get(LABELS_OUTPUT)
    if labels is None or labels.dtype != "uint8" or len(labels.shape) != 3:
        raise ContractError(f"{source}: expected a uint8 [N, H, W] output '{LABELS_OUTPUT}'")
    confidence = outputs.get(CONFIDENCE_OUTPUT)
    if confidence is not None and (confidence.dtype != "uint8" or len(confidence.shape) != 3):
        raise ContractError(f"{source}: output '{CONFIDENCE_OUTPUT}' must be uint8 [N, H, W]")
    return confidence is not None


def describe_model(path: str | Path) -> ModelDescription:
    """Everything the runtime checks about a model file before any backend opens it."""
    summary = read_onnx_summary(path)
    info = ModelInfo.from_metadata(summary.metadata, source=str(summary.path))
    has_confidence = check_contract_interface(summary)
    image = next(i for i in summary.inputs if i.name == INPUT_NAME)
    return ModelDescription(summary.path, summary.sha256, info, has_confidence,
                            dynamic_batch=not isinstance(image.shape[0], int))


def with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    """The model bytes with `entries` set in its metadata_props (ModelProto field 14): existing
    keys replaced in place, new ones appended; every other field is copied byte for byte."""
    remaining = dict(entries)
    parts = []
    for number, wire, value in _fields(memoryview(data)):
        if number == 14 and wire == 2:
            key, _ = _metadata_entry(value)
            if key in remaining:
                value = _metadata_bytes(key, remaining.pop(key))
        parts.append(_field_bytes(number, wire, value))
    parts.extend(_field_bytes(14, 2, _metadata_bytes(key, value))
                 for key, value in remaining.items())
    return b"".join(parts)


def _metadata_bytes(key: str, value: str) -> bytes:
    return (_field_bytes(1, 2, key.encode("utf-8")) + _field_bytes(2, 2, value.encode("utf-8")))
