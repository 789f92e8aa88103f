"""`textseg import`: any semantic-segmentation ONNX file into the artifact contract.

A user's model (exported from segmentation_models_pytorch, Hugging Face transformers, MMSeg,
their own code) takes a normalised float image in its own layout, size and colour order, and
returns per-pixel class scores at some resolution, or class ids. The contract (contract.py)
takes a uint8 RGB image of any size and returns uint8 labels (and confidence) at that size.
The import wraps their graph, unchanged, between the two:

    image uint8 [N,H,W,3] -> float -> NCHW -> [BGR] -> resize to their size -> (x - m) / s
      -> [NHWC] -> THEIR GRAPH -> logits: resize to H x W (bilinear), argmax, peak softmax
                               -> class ids: resize to H x W (nearest)

and checks the result: the ONNX checker, ONNX Runtime against their graph on frames (the
labels must be identical, except at numerical ties), and the TensorRT rules. Everything it was
told is kept in the model's metadata (`import`), with the source file's sha256.

Needs the `onnx` package (a workstation tool; the vehicle runs the imported file).
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from textseg.engine.contract import (
    CONFIDENCE_OUTPUT,
    INPUT_NAME,
    LABELS_OUTPUT,
    UNLABELLED,
    ContractError,
    ModelInfo,
)
from textseg.engine.onnx_file import DataType
from textseg.tools.quantize import replace_metadata

IMPORT_KEY = "import"
# Two graphs of the same network are not fused alike by ONNX Runtime: a pixel whose two best
# classes differ by less than this fraction of the frame's largest |logit| may go either way.
# Where their graph returns ids there is no margin to see: up to this fraction may differ.
TIE_MARGIN = 1e-4
IDS_TIE_FRACTION = 1e-5
OUTPUT_KINDS = ("logits", "labels")
LAYOUTS = ("nchw", "nhwc")
COLOR_ORDERS = ("rgb", "bgr")
# Ops of graphs with more than one image or instance heads we refuse up front, by name.
INSTANCE_OPS = ("NonMaxSuppression", "RoiAlign")
_PREFIX = "textseg_import/"  # the wrapper's own tensor names; never in a user's graph
_OPSET_FLOOR = 13  # Squeeze / Unsqueeze / ReduceSum take axes as inputs from 13 on


class ImportRefused(ContractError):
    """The model cannot be imported; the message says why and what would fix it."""


@dataclass(frozen=True)
class ImportOptions:
    """What a user knows about their model (the `textseg import` options)."""

    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] | None = None  # None: generated
    input_layout: str = "nchw"
    input_size: tuple[int, int] | None = None  # (height, width); None: the model's static one
    color_order: str = "rgb"
    scale: float = 1.0 / 255.0  # pixel * scale, then (x - mean) / std
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    output: str = ""  # the output to use; "" = the model's only output
    output_kind: str = "logits"  # logits [N,K,h,w] | labels (class ids [N,h,w] or [N,1,h,w])
    architecture: str = ""  # a name for `textseg info`; "" = "imported <file name>"
    dataset: str = "unknown"

    def __post_init__(self) -> None:
        problems = []
        if self.input_layout not in LAYOUTS:
            problems.append(f"input layout {self.input_layout!r} is not one of {LAYOUTS}")
        if self.color_order not in COLOR_ORDERS:
            problems.append(f"colour order {self.color_order!r} is not one of {COLOR_ORDERS}")
        if self.output_kind not in OUTPUT_KINDS:
            problems.append(f"output kind {self.output_kind!r} is not one of {OUTPUT_KINDS}")
        if not self.class_names:
            problems.append("no class names")
        if len(set(self.class_names)) != len(self.class_names):
            problems.append("class names repeat")
        if not (self.scale > 0):
            problems.append(f"scale must be > 0, got {self.scale}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"mean and std need 3 values each, std > 0 (got {self.mean}, "
                            f"{self.std})")
        if self.input_size is not None and min(self.input_size) < 1:
            problems.append(f"input size {self.input_size} is not positive")
        if problems:
            raise ImportRefused("import options: " + "; ".join(problems))

    def record(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "palette"}


@dataclass
class ImportReport:
    path: Path
    info: ModelInfo
    frames_checked: int
    pixels_checked: int
    pixels_differing: int
    tensorrt_violations: list[str] = field(default_factory=list)
    source_sha256: str = ""

    def describe(self) -> str:
        trt = ("TensorRT rules: passed" if not self.tensorrt_violations else
               "TensorRT rules: " + "; ".join(self.tensorrt_violations))
        ties = (f", except {self.pixels_differing} at numerical ties"
                if self.pixels_differing else "")
        return (f"{self.path}: {self.info.num_classes} classes, network input "
                f"{self.info.network_input_size[1]}x{self.info.network_input_size[0]}; labels "
                f"identical to the original graph on {self.frames_checked} frames "
                f"({self.pixels_checked} pixels{ties}, ONNX Runtime CPU); {trt}")


def generated_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """`count` distinct colours, hues spread by the golden ratio (stable for a given count)."""
    colours = []
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


def read_class_names(text: str) -> tuple[str, ...]:
    """Class names from a comma-separated list or a file (one name a line, or a JSON list)."""
    path = Path(text)
    if path.is_file():
        content = path.read_text().strip()
        if content.startswith(("[", "{")):
            names = json.loads(content)
            if isinstance(names, dict):  # Hugging Face's id2label: {"0": "road", ...}
                try:
                    names = [names[key] for key in sorted(names, key=int)]
                except ValueError:
                    raise ImportRefused(f"{text}: a JSON object of class names needs the "
                                        "ids as keys (like id2label)") from None
        else:
            names = [line.strip() for line in content.splitlines() if line.strip()]
    else:
        names = [name.strip() for name in text.split(",")]
        if len(names) > 1 and not all(names):
            raise ImportRefused(f"class names {text!r}: an empty name at position "
                                f"{names.index('') + 1} (each comma-separated name is one "
                                "output channel, in order; none may be empty)")
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ImportRefused(f"no class names in {text!r} (a comma-separated list, or a file "
                            "with one name a line or a JSON list)")
    return tuple(names)


def read_palette(text: str) -> tuple[tuple[int, int, int], ...]:
    """A palette from a JSON list of [r, g, b], inline or in a file."""
    path = Path(text)
    content = path.read_text() if path.is_file() else text
    try:
        values = json.loads(content)
        palette = tuple(tuple(int(v) for v in colour) for colour in values)
    except (json.JSONDecodeError, TypeError, ValueError):
        raise ImportRefused(f"palette {text!r}: expected a JSON list of [r, g, b] (inline or "
                            "a file)") from None
    return palette


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportRefused("textseg import needs the onnx package (pip install onnx): a "
                            "workstation tool; the vehicle only runs the imported file") from None
    return onnx


def _dims(value_info) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _node_subgraphs(node):
    """The graphs in `node`'s attributes (If branches, Loop and Scan bodies)."""
    for attribute in node.attribute:
        yield from ([attribute.g] if attribute.HasField("g") else [])
        yield from attribute.graphs


def _subgraphs(graph):
    for node in graph.node:
        yield from _node_subgraphs(node)


def _all_nodes(graph):
    """Every node of `graph` and of its subgraphs, at any depth."""
    for node in graph.node:
        yield node
        for sub in _node_subgraphs(node):
            yield from _all_nodes(sub)


def _tensor_names(graph) -> set[str]:
    """Every tensor name in `graph` and its subgraphs."""
    names = {t.name for t in graph.initializer}
    names |= {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    for node in graph.node:
        names |= set(node.input) | set(node.output)
    for sub in _subgraphs(graph):
        names |= _tensor_names(sub)
    return names - {""}


def _rename(graph, mapping: dict[str, str]) -> None:
    """Rename tensors in `graph` and every subgraph (If / Loop bodies) by `mapping`."""
    for node in graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
    for sub in _subgraphs(graph):
        _rename(sub, mapping)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for tensor in graph.initializer:
        tensor.name = mapping.get(tensor.name, tensor.name)


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
               default=0)


def _before_softmax(graph, output):
    """A graph that ends in a Softmax over the class axis gives probabilities: the wrapper
    upsamples the scores before it (its confidence is their softmax; the labels near class
    boundaries are the upsampled scores', which upsampled probabilities may not give)."""
    from onnx import helper

    producer = next((n for n in graph.node if output.name in n.output), None)
    if producer is None or producer.op_type != "Softmax":
        return output
    axis = next((helper.get_attribute_value(a) for a in producer.attribute if a.name == "axis"),
                None)
    if axis not in (1, -3):
        return output
    return helper.make_tensor_value_info(producer.input[0], DataType.FLOAT, _dims(output))


def _check_source(model, options: ImportOptions):
    """The source graph's image input and chosen output; refusals that name the problem."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ImportRefused(
            f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): "
            "textseg feeds one image per inference (several image inputs, or extra inputs "
            "such as a prompt or a size, are not supported)")
    image = inputs[0]
    if image.type.tensor_type.elem_type != DataType.FLOAT:
        raise ImportRefused(f"input {image.name!r} is not float32 (element type "
                            f"{image.type.tensor_type.elem_type}): import the fp32 model; "
                            "textseg quantize / fp16 make the smaller ones from it")
    dims = _dims(image)
    if len(dims) != 4:
        raise ImportRefused(f"input {image.name!r} has shape {dims}: expected an image "
                            "[N, 3, H, W] (or [N, H, W, 3] with --layout nhwc)")
    channels = dims[1] if options.input_layout == "nchw" else dims[3]
    if channels != 3:
        other = "nhwc" if options.input_layout == "nchw" else "nchw"
        raise ImportRefused(f"input {image.name!r} has shape {dims}: with layout "
                            f"{options.input_layout} that is {channels} channels, not 3 "
                            f"(is the layout {other}?)")
    if _opset(model) < _OPSET_FLOOR:
        raise ImportRefused(f"the model uses opset {_opset(model)}: re-export it with opset "
                            f"{_OPSET_FLOOR} or later (torch.onnx.export(..., opset_version=17))")
    # inside If / Loop bodies too (torchvision's ssdlite), and in the model's local functions
    nodes = [*_all_nodes(graph), *(n for f in model.functions for n in f.node)]
    found = sorted({n.op_type for n in nodes if n.op_type in INSTANCE_OPS})
    if found:
        raise ImportRefused(f"the graph contains {found}: an instance or panoptic head "
                            "(boxes, masks per object); textseg imports semantic "
                            "segmentation, one class per pixel")
    outputs = list(graph.output)
    if options.output:
        chosen = [o for o in outputs if o.name == options.output]
        if not chosen:
            raise ImportRefused(f"no output {options.output!r}; the model's outputs are "
                                f"{[o.name for o in outputs]}")
        output = chosen[0]
    elif len(outputs) == 1:
        output = outputs[0]
    else:
        raise ImportRefused(f"the model has {len(outputs)} outputs "
                            f"({', '.join(f'{o.name} {_dims(o)}' for o in outputs)}): name "
                            "the per-pixel one with --output")
    out_dims = _dims(output)
    classes = len(options.class_names)
    if options.output_kind == "logits":
        if len(out_dims) != 4:
            raise ImportRefused(
                f"output {output.name!r} has shape {out_dims}: per-pixel class scores are "
                "[N, K, h, w]. An output of another rank is not semantic segmentation "
                "(instance or panoptic heads, boxes, embeddings); class ids [N, h, w] import "
                "with --output-kind labels")
        if isinstance(out_dims[1], int) and out_dims[1] != classes:
            nhwc = (" (it looks like channels-last scores [N, h, w, K]: textseg imports "
                    "[N, K, h, w]; transpose them in the export)" if out_dims[-1] == classes
                    else "")
            raise ImportRefused(f"output {output.name!r} has {out_dims[1]} class channels "
                                f"({out_dims}), but {classes} class names were given{nhwc}")
    elif len(out_dims) not in (3, 4) or (len(out_dims) == 4 and out_dims[1] != 1):
        raise ImportRefused(f"output {output.name!r} has shape {out_dims}: class ids are "
                            "[N, h, w] or [N, 1, h, w]")
    if options.output_kind == "logits":
        output = _before_softmax(graph, output)
    spatial = dims[2:] if options.input_layout == "nchw" else dims[1:3]
    static = all(isinstance(d, int) and d > 0 for d in spatial)
    if options.input_size is not None:
        size = tuple(options.input_size)
        if static and size != tuple(spatial):
            raise ImportRefused(
                f"input {image.name!r} has the static size {spatial[1]}x{spatial[0]} (WxH), "
                f"but --size {size[1]}x{size[0]} was given: --size is only for inputs of "
                f"dynamic size (leave it out, or re-export the model with dynamic_axes on "
                f"the height and width)")
    else:
        if not static:
            raise ImportRefused(f"input {image.name!r} has a dynamic size {dims}: give the "
                                "size the network runs at with --size WxH (width x height, "
                                "e.g. 480x384)")
        size = (int(spatial[0]), int(spatial[1]))
    return image, output, size


def _wrap(model, image, output, size: tuple[int, int], options: ImportOptions):
    """The contract graph around `model` (changed in place and returned)."""
    onnx = _onnx()
    from onnx import helper, numpy_helper

    graph = model.graph
    p = _PREFIX
    # their names that clash with the contract's or the wrapper's move aside
    reserved = (INPUT_NAME, LABELS_OUTPUT, CONFIDENCE_OUTPUT)
    mapping = {name: f"{p}theirs/{name}" for name in _tensor_names(graph)
               if name in reserved or name.startswith(p)}
    mapping[image.name] = f"{p}network_input"
    model_output = mapping.get(output.name, output.name)
    _rename(graph, mapping)
    batch = _dims(image)[0]

    def const(name: str, array) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(array), p + name))
        return p + name

    pre, post = [], []
    node = helper.make_node
    pre += [node("Cast", [INPUT_NAME], [p + "float"], to=DataType.FLOAT),
            node("Transpose", [p + "float"], [p + "nchw"], perm=[0, 3, 1, 2])]
    x = p + "nchw"
    if options.color_order == "bgr":
        pre.append(node("Gather", [x, const("bgr_order", np.array([2, 1, 0], np.int64))],
                        [p + "bgr"], axis=1))
        x = p + "bgr"
    pre += [node("Shape", [x], [p + "shape"]),
            node("Slice", [p + "shape", const("zero", np.array([0], np.int64)),
                           const("two", np.array([2], np.int64))], [p + "batch_channels"]),
            node("Concat", [p + "batch_channels",
                            const("network_size", np.array(size, np.int64))],
                 [p + "network_shape"], axis=0),
            node("Resize", [x, "", "", p + "network_shape"], [p + "resized"], mode="linear",
                 coordinate_transformation_mode="half_pixel")]
    # (pixel * scale - mean) / std on the 0..255 scale: one Sub and one Div.
    mean = np.array(options.mean, np.float32) / np.float32(options.scale)
    std = np.array(options.std, np.float32) / np.float32(options.scale)
    pre += [node("Sub", [p + "resized", const("mean", mean.reshape(1, 3, 1, 1))],
                 [p + "centred"]),
            node("Div", [p + "centred", const("std", std.reshape(1, 3, 1, 1))],
                 [p + "normalised" if options.input_layout == "nhwc"
                  else f"{p}network_input"])]
    if options.input_layout == "nhwc":
        pre.append(node("Transpose", [p + "normalised"], [f"{p}network_input"],
                        perm=[0, 2, 3, 1]))

    # the size from the float copy: TensorRT has no uint8 intermediate tensors
    post += [node("Shape", [p + "float"], [p + "image_shape"]),
             node("Slice", [p + "image_shape", const("one", np.array([1], np.int64)),
                            const("three", np.array([3], np.int64))], [p + "image_size"])]
    outputs = [helper.make_tensor_value_info(LABELS_OUTPUT, DataType.UINT8,
                                             [batch, "height", "width"])]
    if options.output_kind == "logits":
        post += [node("Shape", [model_output], [p + "logits_shape"]),
                 node("Slice", [p + "logits_shape", p + "zero", p + "two"],
                      [p + "logits_batch_classes"]),
                 node("Concat", [p + "logits_batch_classes", p + "image_size"],
                      [p + "output_shape"], axis=0),
                 node("Resize", [model_output, "", "", p + "output_shape"], [p + "scores"],
                      mode="linear", coordinate_transformation_mode="half_pixel"),
                 node("ArgMax", [p + "scores"], [p + "argmax"], axis=1, keepdims=0),
                 # ids pass through float: TensorRT converts to uint8 from float only
                 node("Cast", [p + "argmax"], [p + "ids"], to=DataType.FLOAT),
                 node("Cast", [p + "ids"], [LABELS_OUTPUT], to=DataType.UINT8),
                 # the largest softmax probability * 255: 255 / sum exp(l - max l), no Softmax
                 # ReduceMax takes its axes as an input from opset 18 on
                 node("ReduceMax", [p + "scores"], [p + "peak"], axes=[1], keepdims=1)
                 if _opset(model) < 18 else
                 node("ReduceMax", [p + "scores", p + "one"], [p + "peak"], keepdims=1),
                 node("Sub", [p + "scores", p + "peak"], [p + "shifted"]),
                 node("Exp", [p + "shifted"], [p + "exp"]),
                 node("ReduceSum", [p + "exp", p + "one"], [p + "sum"], keepdims=0),
                 node("Div", [const("255", np.array(255.0, np.float32)), p + "sum"],
                      [p + "confidence_float"]),
                 node("Round", [p + "confidence_float"], [p + "confidence_rounded"]),
                 node("Cast", [p + "confidence_rounded"], [CONFIDENCE_OUTPUT], to=DataType.UINT8)]
        outputs.append(helper.make_tensor_value_info(CONFIDENCE_OUTPUT, DataType.UINT8,
                                                     [batch, "height", "width"]))
    else:
        ids = model_output
        if len(_dims(output)) == 3:
            post.append(node("Unsqueeze", [ids, p + "one"], [p + "ids_nchw"]))
            ids = p + "ids_nchw"
        post += [node("Cast", [ids], [p + "ids_float"], to=DataType.FLOAT),
                 node("Shape", [p + "ids_float"], [p + "ids_shape"]),
                 node("Slice", [p + "ids_shape", p + "zero", p + "two"],
                      [p + "ids_batch_channel"]),
                 node("Concat", [p + "ids_batch_channel", p + "image_size"],
                      [p + "ids_output_shape"], axis=0),
                 node("Resize", [p + "ids_float", "", "", p + "ids_output_shape"],
                      [p + "ids_resized"], mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                 node("Squeeze", [p + "ids_resized", p + "one"], [p + "ids_hw"]),
                 node("Cast", [p + "ids_hw"], [LABELS_OUTPUT], to=DataType.UINT8)]

    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    kept_inputs = [i for i in graph.input if i.name != image.name]
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(INPUT_NAME, DataType.UINT8,
                                                      [batch, "height", "width", 3]),
                        *kept_inputs])
    del graph.output[:]
    graph.output.extend(outputs)
    _drop_unused(graph)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - the checker's own error types
        raise ImportRefused(f"the wrapped graph fails the ONNX checker: {exc}") from None
    return model


def _drop_unused(graph) -> None:
    """Remove the nodes whose results nothing reads (their Softmax when the wrapper takes the
    scores before it, the heads of outputs not chosen), then the initializers no node reads:
    ONNX Runtime would run the first on every frame and warn about the second in every tool
    ("Removing initializer ..."). Nodes are in topological order, so one backward pass finds
    everything still needed; a node with subgraphs needs every name they mention."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
            for sub in _node_subgraphs(node):
                needed |= _tensor_names(sub)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    inputs = [i for i in graph.input if i.name in needed]  # IR < 4 lists initializers here
    del graph.input[:]
    graph.input.extend(inputs)


def _reference_labels(source: bytes, frames: Sequence[np.ndarray], image_name: str,
                      output_name: str, options: ImportOptions
                      ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Their graph's labels on `frames` (already at the network size), with the
    preprocessing done here in numpy by the same arithmetic as the wrapper, and where the
    output is logits, the pixels that are numerical ties."""
    import onnxruntime as ort

    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    classes = len(options.class_names)
    mean = np.array(options.mean, np.float32) / np.float32(options.scale)
    std = np.array(options.std, np.float32) / np.float32(options.scale)
    labels = []
    for frame in frames:
        x = frame.astype(np.float32)
        if options.color_order == "bgr":
            x = x[..., ::-1]
        x = (x - mean) / std
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None] if options.input_layout == "nchw"
                                 else x[None])
        out = session.run([output_name], {image_name: x})[0]
        if options.output_kind == "logits" and out.ndim == 4 and out.shape[1] != classes:
            # an output whose class axis the file leaves dynamic: the count shows only here
            raise ImportRefused(f"the model returns {out.shape[1]} class channels (output "
                                f"shape {list(out.shape)} when run), but {classes} class "
                                "names were given")
        labels.append(_to_labels(out, frame.shape[:2], options.output_kind))
    return labels


def _to_labels(out: np.ndarray, size: tuple[int, int], kind: str
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels at `size` from their output, resized as the wrapper resizes it (by ONNX
    Runtime itself where it is not already at that size), and the tie mask of logits."""
    if kind == "labels":
        ids = out.reshape(out.shape[0], *out.shape[-2:])[0]
        if ids.shape != size:
            rows = np.floor(np.arange(size[0]) * ids.shape[0] / size[0]).astype(int)
            cols = np.floor(np.arange(size[1]) * ids.shape[1] / size[1]).astype(int)
            ids = ids[rows][:, cols]
        return ids.astype(np.uint8), None
    if out.shape[-2:] != size:
        out = _resize_logits(out, size)
    top2 = np.sort(out[0], axis=0)[-2:] if out.shape[1] > 1 else None
    tie = TIE_MARGIN * float(np.abs(out).max())
    ties = (top2[1] - top2[0] <= tie) if top2 is not None else np.zeros(size, bool)
    return out[0].argmax(0).astype(np.uint8), ties


@functools.cache
def _logits_resizer():
    """One ONNX Runtime session doing the wrapper's logits Resize, for any shape."""
    import onnxruntime as ort

    helper = _onnx().helper
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                          coordinate_transformation_mode="half_pixel")],
        "resize", [helper.make_tensor_value_info("x", DataType.FLOAT, ["n", "k", "h", "w"]),
                   helper.make_tensor_value_info("sizes", DataType.INT64, [4])],
        [helper.make_tensor_value_info("y", DataType.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    sizes = np.array([*logits.shape[:2], *size], np.int64)
    return _logits_resizer().run(["y"], {"x": logits, "sizes": sizes})[0]


def synthetic_frames(size: tuple[int, int], count: int = 2) -> list[np.ndarray]:
    """Frames for the check when the user gives none: smooth colour fields (not noise, which
    no segmentation model sees)."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(count):
        r = 127.5 + 127.5 * np.sin(xs / (17.0 + 9 * i) + i)
        g = 127.5 + 127.5 * np.cos(ys / (23.0 + 5 * i))
        b = 127.5 + 127.5 * np.sin((xs + ys) / (31.0 + 7 * i))
        frames.append(np.stack([r, g, b], -1).round().astype(np.uint8))
    return frames


def import_model(source: str | Path, output: str | Path, options: ImportOptions,
                 frames: Sequence[np.ndarray] | None = None,
                 self_check: bool = True, require_tensorrt: bool = False) -> ImportReport:
    """Wrap `source` into a contract model at `output` (written atomically), check it and
    return the report. `frames`: uint8 RGB [H, W, 3] images (any size) for the check against
    the original graph and for the stored self-check; None: synthetic ones.
    `require_tensorrt`: refuse a graph TensorRT's parser would refuse (by default the file is
    written for ONNX Runtime and the report lists why TensorRT would not take it)."""
    onnx = _onnx()
    import onnxruntime as ort

    from textseg.engine.self_check import SELF_CHECK_KEY, check_images, make_self_check
    from textseg.engine.tensorrt_rules import check_tensorrt_rules
    from textseg.fileio import atomic_write_bytes

    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"model file not found: {source}")
    data = source.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's errors name nothing useful
        raise ImportRefused(f"{source} is not an ONNX model ({exc})") from None
    if any(key.startswith("textseg.") for key in (p.key for p in model.metadata_props)):
        raise ImportRefused(f"{source} is already a textseg model: nothing to import")
    image, chosen, size = _check_source(model, options)
    # The check compares like with like: the tensor the wrapper upsamples (`chosen`: the
    # scores before a final Softmax, which their graph does not return), so their graph gets
    # it as an extra output. Probabilities upsampled give other labels near class boundaries.
    # (names taken now: the wrapping below renames their tensors in place)
    reference, image_name, output_name = data, image.name, chosen.name
    if output_name not in {o.name for o in model.graph.output}:
        extra = onnx.load_from_string(data)
        extra.graph.output.append(chosen)
        reference = extra.SerializeToString()
    palette = options.palette or generated_palette(len(options.class_names))
    if len(options.class_names) > UNLABELLED:
        raise ImportRefused(f"{len(options.class_names)} classes do not fit a uint8 label image")
    wrapped = _wrap(model, image, chosen, size, options)
    digest = hashlib.sha256(data).hexdigest()
    info = ModelInfo(
        class_names=tuple(options.class_names), palette=tuple(palette),
        network_input_size=size,
        architecture=options.architecture or f"imported {source.name}",
        dataset=options.dataset, training_stage="imported")
    provenance = {"source": source.name, "source_sha256": digest,
                  "source_producer": f"{model.producer_name} {model.producer_version}".strip(),
                  "options": options.record()}
    replace_metadata(wrapped, {**info.to_metadata(), IMPORT_KEY: json.dumps(provenance)})
    result = wrapped.SerializeToString()

    check_frames = check_images(list(frames) if frames else synthetic_frames(size), size,
                                count=max(2, len(frames or [])))
    expected = _reference_labels(reference, check_frames, image_name, output_name, options)
    session = ort.InferenceSession(result, providers=["CPUExecutionProvider"])
    differing = decided_differing = pixels = 0
    for frame, (reference, ties) in zip(check_frames, expected, strict=True):
        labels = session.run([LABELS_OUTPUT], {INPUT_NAME: frame[None]})[0][0]
        if labels.shape != reference.shape:
            raise ImportRefused(f"the imported graph returned labels {labels.shape} for a "
                                f"{reference.shape} frame")
        if int(reference.max()) >= len(options.class_names):
            raise ImportRefused(f"the model predicts class {int(reference.max())}, but only "
                                f"{len(options.class_names)} class names were given")
        differ = labels != reference
        differing += int(differ.sum())
        decided_differing += int((differ & ~ties).sum()) if ties is not None else 0
        pixels += labels.size
    if decided_differing or (options.output_kind == "labels"
                             and differing > IDS_TIE_FRACTION * pixels):
        raise ImportRefused(
            f"the imported graph's labels differ from the original graph's on {differing} of "
            f"{pixels} pixels: an internal error of the import (please report it with the "
            "model's producer and the options)")
    if self_check:
        check = make_self_check(result, check_frames[:2], reference=f"{source.name} (imported)")
        result = _with_metadata(result, {SELF_CHECK_KEY: check.to_metadata()})
    if frames and CONFIDENCE_OUTPUT in {o.name for o in session.get_outputs()}:
        # the user's frames: what the node's health signal compares live ones with
        from textseg.health import HEALTH_KEY, reference_from_model

        reference = reference_from_model(result, list(frames), f"{len(frames)} frames given "
                                         "to textseg import", len(options.class_names))
        result = _with_metadata(result, {HEALTH_KEY: reference.to_metadata()})
    violations = [str(v) for v in check_tensorrt_rules(result)]
    if violations and require_tensorrt:
        raise ImportRefused(f"TensorRT would refuse the graph: {'; '.join(violations)}")
    path = atomic_write_bytes(output, result)
    return ImportReport(Path(path), info, len(check_frames), pixels, differing, violations,
                        digest)


def _with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    from textseg.engine.onnx_file import with_metadata

    return with_metadata(data, entries)
