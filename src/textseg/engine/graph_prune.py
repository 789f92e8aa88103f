"""A labels-only copy of a model: one graph output and the nodes only it needed removed.

ONNX Runtime runs every node of a graph whatever outputs a call asks for: the default model's
confidence (max softmax: ReduceMax, Sub, Exp, ReduceSum, Reciprocal at the full output size)
cost 12-15 % of each inference (measured with its profiler) even when only the labels were
fetched, and removing the graph output alone did not help. The backend therefore runs a copy
without the confidence output and its nodes for frames that want labels only, and opens the
whole graph only when confidence is asked for.

Initializers only the removed nodes read go too (ONNX Runtime would warn "Removing
initializer ..." on every load: an imported model's confidence has a constant of its own).

Works on the protobuf wire format (``ModelProto.graph`` 7; ``GraphProto.node`` 1,
``GraphProto.initializer`` 5, ``GraphProto.input`` 11, ``GraphProto.output`` 12;
``TensorProto.name`` 8), so the vehicle needs no `onnx`. Nodes are kept in file order
(ONNX requires a topological order, so one backward pass finds everything still needed).
"""

from __future__ import annotations

from textseg.engine.onnx_file import _fields, _text
from textseg.engine.qdq_cpu import _field_bytes
from textseg.engine.tensorrt_rules import _node, _value_type

# Ops whose subgraphs may read any outer value: not pruned around (none in textseg models).
_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})


def without_output(data: bytes, output: str) -> tuple[bytes, int]:
    """(the model without graph output `output` and the nodes that only fed it, the number of
    nodes removed); `data` unchanged and 0 when it has no such output, no other output, or
    subgraphs."""
    model_fields = list(_fields(memoryview(data)))
    graph = next((value for number, wire, value in model_fields if number == 7 and wire == 2),
                 None)
    if graph is None:
        return data, 0
    entries = list(_fields(graph))
    nodes = {i: _node(value) for i, (number, wire, value) in enumerate(entries)
             if number == 1 and wire == 2}
    outputs = {i: _value_type(value)[0] for i, (number, wire, value) in enumerate(entries)
               if number == 12 and wire == 2}
    kept_outputs = [name for name in outputs.values() if name != output]
    if output not in outputs.values() or not kept_outputs or any(
            node.op_type in _SUBGRAPH_OPS for node in nodes.values()):
        return data, 0
    needed = set(kept_outputs)
    dropped = set()
    for index in sorted(nodes, reverse=True):
        node = nodes[index]
        if any(name in needed for name in node.outputs):
            needed.update(name for name in node.inputs if name)
        else:
            dropped.add(index)
    dropped.update(i for i, name in outputs.items() if name == output)
    needed.update(_value_type(value)[0] for number, wire, value in entries
                  if number == 11 and wire == 2)  # an initializer that is an input stays
    unread = {i for i, (number, wire, value) in enumerate(entries) if number == 5 and wire == 2
              and _tensor_name(value) not in needed}
    graph_bytes = b"".join(_field_bytes(number, wire, value)
                           for i, (number, wire, value) in enumerate(entries)
                           if i not in dropped and i not in unread)
    model_bytes = b"".join(
        _field_bytes(7, 2, graph_bytes) if number == 7 and wire == 2
        else _field_bytes(number, wire, value) for number, wire, value in model_fields)
    return model_bytes, len(dropped) - 1


def _tensor_name(tensor) -> str:
    """TensorProto.name, without reading the tensor's data."""
    return next((_text(value) for number, wire, value in _fields(tensor)
                 if number == 8 and wire == 2), "")
