"""A labels-only copy of a model: one graph output and the nodes only it needed removed.

ONNX Runtime runs every node of a graph whatever outputs a call asks for: the default model's
confidence (max softmax: ReduceMax, Sub, Exp, ReduceSum, Reciprocal at the full output size)
cost 12-15 % of each inference (measured with its profiler) even when only the labels were
fetched, and removing the graph output alone did not help. The backend therefore runs a copy
without the confidence output and its nodes for frames that want labels only, and opens the
whole graph only when confidence is asked for.

Initializers only the removed nodes read go too (ONNX Runtime would warn "Removing
initializer ..." on every load: an imported model's confidence has a constant of its own).

The removal is a set of edits of the parsed model (`textseg.engine.onnx_file`), so the
vehicle needs no `onnx`. Nodes are kept in file order (ONNX requires a topological order, so
one backward pass finds everything still needed).
"""

from __future__ import annotations

from textseg.engine.onnx_file import GraphProto, OnnxModel, read_onnx_model

# Ops whose subgraphs may read any outer value: not pruned around (none in textseg models).
_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})


def output_removal(model: OnnxModel, output: str) -> tuple[set[int], int]:
    """(the graph fields to leave out for a model without graph output `output` and the nodes
    that only fed it, how many of them are nodes); nothing when the model has no such output,
    no other output, or subgraphs."""
    nodes = dict(model.graph_entries(GraphProto.NODE))
    outputs = {index: spec.name for index, spec in model.graph_entries(GraphProto.OUTPUT)}
    kept_outputs = [name for name in outputs.values() if name != output]
    if output not in outputs.values() or not kept_outputs or any(
            node.op_type in _SUBGRAPH_OPS for node in nodes.values()):
        return set(), 0
    needed = set(kept_outputs)
    dropped = set()
    for index in sorted(nodes, reverse=True):
        node = nodes[index]
        if any(name in needed for name in node.outputs):
            needed.update(name for name in node.inputs if name)
        else:
            dropped.add(index)
    removed_nodes = len(dropped)
    dropped.update(index for index, name in outputs.items() if name == output)
    # An initializer that is also a graph input stays.
    needed.update(spec.name for _, spec in model.graph_entries(GraphProto.INPUT))
    dropped.update(index for index, tensor in model.graph_entries(GraphProto.INITIALIZER)
                   if tensor.name not in needed)
    return dropped, removed_nodes


def without_output(source: bytes | OnnxModel, output: str) -> tuple[bytes, int]:
    """(the model without graph output `output` and the nodes that only fed it, the number of
    nodes removed); the model's bytes unchanged and 0 when it cannot be pruned that way."""
    model = source if isinstance(source, OnnxModel) else read_onnx_model(source)
    dropped, removed_nodes = output_removal(model, output)
    if not dropped:
        return model.data, 0
    return model.edited(drop=dropped), removed_nodes
