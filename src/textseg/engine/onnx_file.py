"""The one ONNX reader of the runtime: a model file parsed once into an `OnnxModel`.

Everything that looks inside a model reads that object: the contract check and metadata
(`describe_model`), precision detection (`model_precision`), TensorRT's parser rules
(tensorrt_rules), the int8 saturation check (int8_saturation), the Q/DQ rewrite for ONNX
Runtime's CPU (qdq_cpu) and the labels-only graph (graph_prune). The rewrites are edits of the
parsed model (`OnnxModel.edited`), so a backend that opens a model parses it once.

Why hand-written, not `onnx` and not classes generated from onnx.proto for `protobuf`: the
vehicle may have TensorRT without `onnx` or onnxruntime (which brings `protobuf`), so this
reader needs none of them. Generated classes would also add a generated file tied to the
protobuf release it was made with (protobuf refuses generated code newer than its runtime),
register onnx.ModelProto & co. a second time in protobuf's global descriptor pool (an error
where `onnx` is imported too: the tools and tests) and copy every field, weights included. The
few fields read here are named below (numbers from onnx.proto, checked against `onnx`'s own
descriptors in the tests); weights are never copied, only sliced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from textseg.engine.contract import (
    ContractError,
    ModelInfo,
    TensorSpec,
    check_interface,
)


class WireType:
    """Protobuf wire types (the low 3 bits of a field's key)."""

    VARINT = 0
    I64 = 1
    LEN = 2
    I32 = 5


# Field numbers of onnx.proto's messages, those this reader uses; nested classes mirror nested
# messages (TypeProto.Tensor, TensorShapeProto.Dimension).
class ModelProto:
    IR_VERSION = 1
    GRAPH = 7
    OPSET_IMPORT = 8
    METADATA_PROPS = 14


class OperatorSetIdProto:
    DOMAIN = 1
    VERSION = 2


class StringStringEntryProto:
    KEY = 1
    VALUE = 2


class GraphProto:
    NODE = 1
    INITIALIZER = 5
    INPUT = 11
    OUTPUT = 12


class NodeProto:
    INPUT = 1
    OUTPUT = 2
    NAME = 3
    OP_TYPE = 4
    ATTRIBUTE = 5
    DOMAIN = 7


class AttributeProto:
    NAME = 1
    INT = 3  # `i`
    STRING = 4  # `s`
    TENSOR = 5  # `t`


class TensorProto:
    DIMS = 1
    DATA_TYPE = 2
    INT32_DATA = 5
    NAME = 8
    RAW_DATA = 9


class ValueInfoProto:
    NAME = 1
    TYPE = 2


class TypeProto:
    TENSOR_TYPE = 1

    class Tensor:
        ELEM_TYPE = 1
        SHAPE = 2


class TensorShapeProto:
    DIM = 1

    class Dimension:
        DIM_VALUE = 1
        DIM_PARAM = 2


class DataType:
    """onnx.TensorProto.DataType values that textseg names."""

    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    INT32 = 6
    INT64 = 7
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    BFLOAT16 = 16


# numpy's name for each (others read as "type<N>").
DTYPE_NAMES = {DataType.FLOAT: "float32", DataType.UINT8: "uint8", DataType.INT8: "int8",
               DataType.INT32: "int32", DataType.INT64: "int64", DataType.BOOL: "bool",
               DataType.FLOAT16: "float16", DataType.DOUBLE: "float64",
               DataType.BFLOAT16: "bfloat16"}
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
CPU_ONLY_TARGET = "onnxruntime-cpu"  # `textseg quantize --target cpu` records this


def dtype_name(data_type: int) -> str:
    return DTYPE_NAMES.get(data_type, f"type<{data_type}>")


# --- the wire format -----------------------------------------------------------------------

class WireError(ValueError):
    """Bytes that are not a protobuf message."""


# (field number, wire type, value): an int for varints, else a slice of the message (no copy).
WireField = tuple[int, int, int | memoryview]
VARINT, LEN = WireType.VARINT, WireType.LEN  # the two the messages below use


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def wire_fields(buf) -> Iterator[WireField]:
    """The fields of one protobuf message, in order."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == LEN:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == WireType.I64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == WireType.I32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("field runs past the end of its message")
        yield number, wire, value


def _embedded(buf, number: int) -> Iterator[memoryview]:
    """The length-delimited values of field `number` (strings, bytes, messages)."""
    return (value for n, wire, value in wire_fields(buf) if n == number and wire == LEN)


def packed_varints(value) -> list[int]:
    """The unsigned values of a packed repeated varint field."""
    raw, pos, out = bytes(value), 0, []
    while pos < len(raw):
        number, pos = _varint(raw, pos)
        out.append(number)
    return out


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


def encode_field(number: int, wire: int, value) -> bytes:
    """One field encoded as `wire_fields` reads it."""
    key = _encode_varint(number << 3 | wire)
    if wire == VARINT:
        return key + _encode_varint(value)
    if wire == LEN:
        return key + _encode_varint(len(value)) + bytes(value)
    return key + bytes(value)  # I64 / I32


def _text(value) -> str:
    return bytes(value).decode("utf-8")


# --- the messages read -----------------------------------------------------------------------

@dataclass
class GraphNode:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    name: str = ""
    domain: str = ""
    ints: dict[str, int] = field(default_factory=dict)
    strings: dict[str, bytes] = field(default_factory=dict)
    tensor_type: str | None = None  # Constant's value type


class Initializer(NamedTuple):
    dtype: str
    raw: memoryview | bytes  # raw_data, or packed int32_data (int8 zero points land there)
    dims: tuple[int, ...]
    name: str


def _initializer(tensor) -> Initializer:
    name, dtype, raw, dims = "", "?", b"", []
    for number, wire, value in wire_fields(tensor):
        if number == TensorProto.DIMS:
            if wire == VARINT:
                dims.append(value)
            elif wire == LEN:  # packed
                dims.extend(packed_varints(value))
        elif number == TensorProto.DATA_TYPE and wire == VARINT:
            dtype = dtype_name(value)
        elif wire != LEN:
            continue
        elif number == TensorProto.NAME:
            name = _text(value)
        elif number in (TensorProto.RAW_DATA, TensorProto.INT32_DATA):
            raw = value
    return Initializer(dtype, raw, tuple(dims), name)


def retyped_tensor(tensor, data_type: int, raw_data: bytes) -> bytes:
    """A TensorProto with the name and dims of `tensor` (encoded as they were) and the given
    data type and raw data."""
    kept = [encode_field(number, wire, value) for number, wire, value in wire_fields(tensor)
            if number == TensorProto.DIMS or (number == TensorProto.NAME and wire == LEN)]
    return b"".join([*kept, encode_field(TensorProto.DATA_TYPE, VARINT, data_type),
                     encode_field(TensorProto.RAW_DATA, LEN, raw_data)])


def _node(buf) -> GraphNode:
    node = GraphNode("", [], [])
    for number, wire, value in wire_fields(buf):
        if wire != LEN:
            continue
        if number == NodeProto.INPUT:
            node.inputs.append(_text(value))
        elif number == NodeProto.OUTPUT:
            node.outputs.append(_text(value))
        elif number == NodeProto.NAME:
            node.name = _text(value)
        elif number == NodeProto.OP_TYPE:
            node.op_type = _text(value)
        elif number == NodeProto.DOMAIN:
            node.domain = _text(value)
        elif number == NodeProto.ATTRIBUTE:
            _read_attribute(value, node)
    return node


def _read_attribute(buf, node: GraphNode) -> None:
    name, integer, string, tensor = "", None, None, None
    for number, wire, value in wire_fields(buf):
        if number == AttributeProto.NAME and wire == LEN:
            name = _text(value)
        elif number == AttributeProto.INT and wire == VARINT:
            integer = value
        elif number == AttributeProto.STRING and wire == LEN:
            string = bytes(value)
        elif number == AttributeProto.TENSOR and wire == LEN:
            tensor = _initializer(value).dtype
    if integer is not None:
        node.ints[name] = integer
    if string is not None:
        node.strings[name] = string
    if tensor is not None and name == "value":
        node.tensor_type = tensor


def _tensor_spec(value_info) -> TensorSpec:
    """A ValueInfoProto (graph input or output) with a tensor type."""
    name, dtype, shape = "", "?", []
    for number, wire, value in wire_fields(value_info):
        if number == ValueInfoProto.NAME and wire == LEN:
            name = _text(value)
        elif number == ValueInfoProto.TYPE and wire == LEN:
            for tensor_type in _embedded(value, TypeProto.TENSOR_TYPE):
                for t_number, t_wire, t_value in wire_fields(tensor_type):
                    if t_number == TypeProto.Tensor.ELEM_TYPE and t_wire == VARINT:
                        dtype = dtype_name(t_value)
                    elif t_number == TypeProto.Tensor.SHAPE and t_wire == LEN:
                        shape.extend(_dimension(d) for d in
                                     _embedded(t_value, TensorShapeProto.DIM))
    return TensorSpec(name, dtype, tuple(shape))


def _dimension(buf) -> int | str:
    dim: int | str = "?"
    for number, wire, value in wire_fields(buf):
        if number == TensorShapeProto.Dimension.DIM_VALUE and wire == VARINT:
            dim = value
        elif number == TensorShapeProto.Dimension.DIM_PARAM and wire == LEN:
            dim = _text(value)
    return dim


def _metadata_entry(entry) -> tuple[str, str]:
    key = val = ""
    for number, wire, value in wire_fields(entry):
        if number == StringStringEntryProto.KEY and wire == LEN:
            key = _text(value)
        elif number == StringStringEntryProto.VALUE and wire == LEN:
            val = _text(value)
    return key, val


def _opset(buf) -> tuple[str, int]:
    domain, version = "", 0
    for number, wire, value in wire_fields(buf):
        if number == OperatorSetIdProto.DOMAIN and wire == LEN:
            domain = _text(value)
        elif number == OperatorSetIdProto.VERSION and wire == VARINT:
            version = value
    return domain, version


# --- the model -------------------------------------------------------------------------------

GraphItem = GraphNode | TensorSpec | Initializer  # a parsed node, graph input/output, tensor


@dataclass(frozen=True, eq=False)
class OnnxModel:
    """A parsed ONNX model: what textseg reads of it, and its graph's fields for edits."""

    source: str  # the file, or "model" for bytes: named in errors
    path: Path | None
    data: bytes
    metadata: dict[str, str]
    opset: int  # of the default ("" / "ai.onnx") domain
    inputs: tuple[TensorSpec, ...]  # as listed (old exports list initializers here too)
    outputs: tuple[TensorSpec, ...]
    nodes: tuple[GraphNode, ...]  # in file order (a topological order)
    initializers: dict[str, Initializer]
    model_fields: tuple[WireField, ...]
    graph_fields: tuple[WireField, ...]
    graph_items: tuple[GraphItem | None, ...]  # each graph field's, parsed (None: not read)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def dims(self) -> dict[str, tuple[int, ...]]:
        """Initializer shapes by name."""
        return {name: tensor.dims for name, tensor in self.initializers.items()}

    @cached_property
    def interface_inputs(self) -> tuple[TensorSpec, ...]:
        """The inputs a caller feeds: graph inputs that are not initializers."""
        return tuple(i for i in self.inputs if i.name not in self.initializers)

    def graph_entries(self, number: int) -> list[tuple[int, GraphItem]]:
        """(position, parsed item) of every graph field `number` (a GraphProto field)."""
        return [(index, item) for index, ((n, _, _), item) in
                enumerate(zip(self.graph_fields, self.graph_items, strict=True))
                if n == number and item is not None]

    def edited(self, replace: Mapping[int, bytes] | None = None,
               drop: Collection[int] = ()) -> bytes:
        """The model's bytes with graph fields at these positions given new values (encoded
        messages) or left out; every other field is written as it was read."""
        replace = replace or {}
        graph = b"".join(encode_field(number, wire, replace.get(index, value))
                         for index, (number, wire, value) in enumerate(self.graph_fields)
                         if index not in drop)
        return b"".join(
            encode_field(number, wire, graph if number == ModelProto.GRAPH and wire == LEN
                         else value) for number, wire, value in self.model_fields)


def read_onnx_model(source: str | Path | bytes) -> OnnxModel:
    """An ONNX file (or its bytes) parsed once.

    Raises FileNotFoundError for a missing file and ContractError for anything that is not a
    readable ONNX model.
    """
    if isinstance(source, bytes):
        path, data = None, source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        data = path.read_bytes()
    name = str(path) if path is not None else "model"
    if not data:
        raise ContractError(f"{name} is not an ONNX model: the file is empty")
    try:
        return _parse(data, name, path)
    except (WireError, UnicodeDecodeError) as exc:
        raise ContractError(f"{name} is not an ONNX model (unreadable protobuf: {exc})"
                            ) from None


def _parse(data: bytes, name: str, path: Path | None) -> OnnxModel:
    model_fields = tuple(wire_fields(memoryview(data)))
    metadata: dict[str, str] = {}
    opset = 0
    graphs = []
    seen_ir = False
    for number, wire, value in model_fields:
        if number == ModelProto.IR_VERSION and wire == VARINT:
            seen_ir = True
        elif wire != LEN:
            continue
        elif number == ModelProto.GRAPH:
            graphs.append(value)
        elif number == ModelProto.METADATA_PROPS:
            key, text = _metadata_entry(value)
            metadata[key] = text
        elif number == ModelProto.OPSET_IMPORT:
            domain, version = _opset(value)
            if domain in ("", "ai.onnx"):
                opset = version
    if not seen_ir or not graphs:
        raise ContractError(f"{name} is not an ONNX model (no ir_version or graph)")
    if len(graphs) > 1:
        raise WireError("more than one graph")
    graph_fields = tuple(wire_fields(graphs[0]))
    readers = {GraphProto.NODE: _node, GraphProto.INITIALIZER: _initializer,
               GraphProto.INPUT: _tensor_spec, GraphProto.OUTPUT: _tensor_spec}
    items = tuple(readers[number](value) if number in readers and wire == LEN else None
                  for number, wire, value in graph_fields)

    def of(number: int) -> tuple:
        return tuple(item for (n, _, _), item in zip(graph_fields, items, strict=True)
                     if n == number and item is not None)

    return OnnxModel(name, path, data, metadata, opset, of(GraphProto.INPUT),
                     of(GraphProto.OUTPUT), of(GraphProto.NODE),
                     {t.name: t for t in of(GraphProto.INITIALIZER)}, model_fields,
                     graph_fields, items)


def _model(source: str | Path | bytes | OnnxModel) -> OnnxModel:
    return source if isinstance(source, OnnxModel) else read_onnx_model(source)


# --- what the runtime reads of a model -------------------------------------------------------

def model_precision(source: str | Path | bytes | OnnxModel) -> str:
    """'int8' for a Q/DQ model, 'fp16' for a model with float16 weights or casts, else 'fp32'."""
    model = _model(source)
    if any(n.op_type in QDQ_OPS for n in model.nodes):
        return "int8"
    if any(t.dtype == "float16" for t in model.initializers.values()) or any(
            n.op_type == "Cast" and n.ints.get("to") == DataType.FLOAT16 for n in model.nodes):
        return "fp16"
    return "fp32"


def quantization_target(metadata: dict[str, str]) -> str:
    """The `target` that `textseg quantize` recorded in a model's metadata: "tensorrt",
    CPU_ONLY_TARGET, or "" for a model it did not write."""
    try:
        return str(json.loads(metadata.get("quantization") or "{}").get("target", ""))
    except (ValueError, AttributeError):
        return ""


@dataclass(frozen=True)
class ModelDescription:
    """A contract model as the runtime sees it: metadata, interface facts and identity."""

    path: Path | None
    sha256: str
    info: ModelInfo
    has_confidence: bool
    dynamic_batch: bool = False  # the batch axis is dynamic (older models fix it at 1)


def describe_model(source: str | Path | OnnxModel) -> ModelDescription:
    """Everything the runtime checks about a model before any backend opens it: its metadata,
    then its interface (ContractError naming what is wrong)."""
    model = _model(source)
    info = ModelInfo.from_metadata(model.metadata, source=model.source)
    interface = check_interface(model.interface_inputs, model.outputs, model.source)
    return ModelDescription(model.path, model.sha256, info, interface.has_confidence,
                            interface.dynamic_batch)


def with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    """The model bytes with `entries` set in its metadata_props: existing keys replaced in
    place, new ones appended; every other field is written as it was read."""
    remaining = dict(entries)
    parts = []
    for number, wire, value in wire_fields(memoryview(data)):
        if number == ModelProto.METADATA_PROPS and wire == LEN:
            key, _ = _metadata_entry(value)
            if key in remaining:
                value = _metadata_bytes(key, remaining.pop(key))
        parts.append(encode_field(number, wire, value))
    parts.extend(encode_field(ModelProto.METADATA_PROPS, LEN, _metadata_bytes(k, v))
                 for k, v in remaining.items())
    return b"".join(parts)


def _metadata_bytes(key: str, value: str) -> bytes:
    return (encode_field(StringStringEntryProto.KEY, LEN, key.encode("utf-8"))
            + encode_field(StringStringEntryProto.VALUE, LEN, value.encode("utf-8")))
