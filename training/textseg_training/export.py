"""Export a trained network to the textseg artifact contract (one self-checking ONNX file).

The exported graph takes the camera image as uint8 RGB NHWC and returns uint8 class ids at the
input resolution: normalisation, resizing to the network resolution, bilinear upsampling of the
logits and argmax are inside the graph. The normalisation constants are read from the model's
backbone, so they exist in one place and travel inside the artifact.
"""

from __future__ import annotations

import copy
import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from textseg.engine.contract import (
    CONFIDENCE_OUTPUT,
    INPUT_NAME,
    LABELS_OUTPUT,
    ModelInfo,
)
from textseg.engine.self_check import SELF_CHECK_KEY, make_self_check
from textseg.engine.self_check import check_images as self_check_frames
from textseg.engine.tensorrt_rules import require_tensorrt_rules
from textseg.fileio import atomic_write_bytes
from textseg.health import HEALTH_KEY, reference_from_model
from textseg_training.results import portable

HEALTH_FRAMES = 40  # training frames the health reference is computed on

OPSET = 17


class DeployWrapper(nn.Module):
    """uint8 RGB [N, H, W, 3] -> uint8 labels [N, H, W] (+ uint8 confidence)."""

    def __init__(self, model: nn.Module, network_input_size: tuple[int, int],
                 mean: tuple[float, float, float], std: tuple[float, float, float],
                 with_confidence: bool = False) -> None:
        super().__init__()
        self.model = model
        self.network_input_size = tuple(network_input_size)
        self.with_confidence = with_confidence
        # Constants on the 0..255 scale so the graph needs no extra division.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, image: torch.Tensor):
        # Cast before any other op: TensorRT's ONNX parser refuses uint8 intermediate tensors
        # (onnx-tensorrt ModelImporter: "TensorRT does not support UINT8 types for
        # intermediate tensors"; NVIDIA/TensorRT#2809), so the image is uint8 at the input only.
        x = image.float().permute(0, 3, 1, 2)
        height, width = x.shape[-2:]
        # Resize first, normalise after: the same result (both linear) on fewer pixels.
        x = F.interpolate(x, size=self.network_input_size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        logits = self.model(x)
        logits = F.interpolate(logits, size=(height, width), mode="bilinear",
                               align_corners=False)
        # ArgMax gives int64; TensorRT documents uint8 conversions from float / half only
        # (NvInferRuntimeBase.h), so the ids pass through float (exact for ids < 2^24).
        labels = logits.argmax(dim=1).float().to(torch.uint8)
        if not self.with_confidence:
            return labels
        # The largest softmax probability, 1 / sum_c exp(l_c - max l), without the Softmax:
        # ONNX Runtime's Softmax over the channel axis of NCHW transposes the whole map and
        # took a third of the default model's CPU time (profiled with `textseg profile`).
        peak = logits.amax(dim=1, keepdim=True)
        confidence = 1.0 / torch.exp(logits - peak).sum(dim=1)
        return labels, (confidence * 255.0).round().to(torch.uint8)


class StaticSamePadConv(nn.Module):
    """A TensorFlow-"same" convolution (timm's Conv2dSame, in EfficientNet-Lite) with its
    padding fixed for one input size. Conv2dSame computes the padding from the input's shape
    at run time, which exports as a Shape -> ... -> Pad chain per convolution; the deploy graph
    always runs at the network size, so the padding is a constant: symmetric padding goes into
    the convolution, asymmetric padding into a constant Pad that ONNX Runtime (and TensorRT)
    fold into it."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        # A plain Conv2d sharing the same parameters (no run-time padding of its own).
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                              conv.stride, 0, conv.dilation, conv.groups, conv.bias is not None)
        self.conv.weight = conv.weight
        self.conv.bias = conv.bias
        self.pads = pads  # left, right, top, bottom, as F.pad takes them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.pads
        conv = self.conv
        if left == right and top == bottom:
            return F.conv2d(x, conv.weight, conv.bias, conv.stride, (top, left), conv.dilation,
                            conv.groups)
        return F.conv2d(F.pad(x, self.pads), conv.weight, conv.bias, conv.stride, 0,
                        conv.dilation, conv.groups)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def freeze_same_padding(model: nn.Module, input_size: tuple[int, int]) -> nn.Module:
    """Replace every run-time "same" padding of `model` by the constant one of `input_size`
    (the network size): the same numbers, a static graph. Returns `model`, changed in place."""
    found = {name: module for name, module in model.named_modules()
             if type(module).__name__ == "Conv2dSame"}
    if not found:
        return model
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [module.register_forward_pre_hook(
        lambda _, inputs, name=name: sizes.__setitem__(name, tuple(inputs[0].shape[-2:])))
        for name, module in found.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, conv in found.items():
        (height, width), (kh, kw) = sizes[name], conv.kernel_size
        top, bottom = _same_padding(height, kh, conv.stride[0], conv.dilation[0])
        left, right = _same_padding(width, kw, conv.stride[1], conv.dilation[1])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, StaticSamePadConv(conv, (left, right, top, bottom)))
    return model


def _constant(graph: onnx.GraphProto, name: str, producers: dict[str, onnx.NodeProto],
              depth: int = 0) -> np.ndarray | None:
    """The value of tensor `name` when it depends on constants only (initializers, Constant
    nodes, and the small shape ops the exporter writes around them), else None."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    node = producers.get(name)
    if node is None or depth > 16 or node.op_type not in (
            "Constant", "ConstantOfShape", "Cast", "Reshape", "Concat", "Slice", "Transpose",
            "Unsqueeze", "Squeeze", "Gather"):
        return None
    inputs = {}
    for item in node.input:
        if not item:
            continue
        value = _constant(graph, item, producers, depth + 1)
        if value is None:
            return None
        inputs[item] = value
    # One node, evaluated by onnx's reference implementation on its constant inputs.
    single = onnx.helper.make_graph(
        [node], "constant", [], [onnx.helper.make_tensor_value_info(out, 0, None)
                                 for out in node.output],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inputs.items()])
    opset = [onnx.helper.make_opsetid("", OPSET)]
    results = ReferenceEvaluator(onnx.helper.make_model(single, opset_imports=opset)).run(None, {})
    return np.asarray(results[list(node.output).index(name)])


def fold_pads_into_convs(proto: onnx.ModelProto) -> int:
    """Fold each constant zero Pad whose only reader is a Conv into that Conv's `pads`
    (ONNX Conv takes asymmetric padding; PyTorch's conv cannot express it, so the export
    writes a Pad). Returns how many were folded; the graph is changed in place."""
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        consumers = readers.get(pad.output[0], [])
        if mode != b"constant" or len(consumers) != 1 or consumers[0].op_type != "Conv":
            continue
        value = (_constant(graph, pad.input[2], producers)
                 if len(pad.input) > 2 and pad.input[2] else np.zeros(()))
        pads = _constant(graph, pad.input[1], producers)
        if value is None or pads is None or np.any(value != 0) or pads.shape != (8,):
            continue
        begin, end = pads[:4].tolist(), pads[4:].tolist()
        if begin[:2] != [0, 0] or end[:2] != [0, 0]:
            continue  # padding of the batch or channel axis
        conv = consumers[0]
        existing = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
        if any(existing) or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET")
                                for a in conv.attribute):
            continue
        for attr in list(conv.attribute):
            if attr.name == "pads":
                conv.attribute.remove(attr)
        conv.attribute.append(onnx.helper.make_attribute(
            "pads", [int(begin[2]), int(begin[3]), int(end[2]), int(end[3])]))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    _remove_unused_nodes(graph)
    return len(folded)


def _remove_unused_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes none of whose outputs is read (the folded Pads' constant chains)."""
    while True:
        read = {name for node in graph.node for name in node.input}
        read |= {o.name for o in graph.output}
        unused = [n for n in graph.node if not any(out in read for out in n.output)]
        if not unused:
            return
        for node in unused:
            graph.node.remove(node)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    size_bytes: int
    parity_pixels: int
    parity_agreement: float  # fraction of pixels where ONNX Runtime == PyTorch
    evaluation: dict[str, Any] | None = None  # evaluate_artifact's figures, when asked for


def export_onnx(model: nn.Module, info: ModelInfo, path: str | Path,
                mean: tuple[float, float, float], std: tuple[float, float, float],
                with_confidence: bool = False, check_images: list[np.ndarray] | None = None,
                evaluate_on: Any = None, health_frames: list[np.ndarray] | None = None
                ) -> ExportReport:
    """Export `model` (deploy mode, returns 1/8 logits) with `info` as metadata.

    The file is checked (onnx.checker, then ONNX Runtime against PyTorch on `check_images`, or a
    random frame) before it atomically replaces `path`. With `evaluate_on` (a dataset with
    `load_raw`), the artifact itself is scored with ONNX Runtime on it and the figures are
    written into its metadata (key `evaluation`) and the report. With a confidence output and
    `health_frames` (training frames), the node's health reference is computed on them and
    stored (key `health_reference`, textseg.health).
    """
    path = Path(path)
    model = freeze_same_padding(copy.deepcopy(model).eval(), info.network_input_size)
    wrapper = DeployWrapper(model, info.network_input_size, mean, std, with_confidence).eval()
    h, w = info.network_input_size
    # Traced with two frames and checked below with one: a batch size baked into the graph by
    # mistake fails the check instead of shipping (the batch axis is dynamic, so one inference
    # can serve several cameras).
    sample = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    outputs = [LABELS_OUTPUT] + ([CONFIDENCE_OUTPUT] if with_confidence else [])
    dynamic = {INPUT_NAME: {0: "batch", 1: "height", 2: "width"}}
    dynamic.update({name: {0: "batch", 1: "height", 2: "width"} for name in outputs})
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(wrapper, (sample,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=outputs,
                          dynamic_axes=dynamic, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    fold_pads_into_convs(proto)
    proto.producer_name = "textseg_training"
    evaluation = None
    if evaluate_on is not None:
        evaluation = evaluate_artifact(proto.SerializeToString(), evaluate_on, info)
        info = replace(info, eval_miou=evaluation["miou"],
                       extra={**info.extra, "evaluation": json.dumps(evaluation)})
    images = check_images if check_images is not None else [frame.numpy() for frame in sample]
    # The load-time self-check: the exported graph's own fp32 labels on a few of the check
    # frames at the network's size (textseg.engine.self_check); every backend compares. Without
    # real frames, blocks of colour: unlike noise, their labels survive the resizing to a
    # TensorRT engine's input size.
    stored = check_images if check_images is not None else block_frames(info.network_input_size)
    self_check = make_self_check(proto.SerializeToString(),
                                 self_check_frames(stored, info.network_input_size),
                                 reference=path.name)
    info = replace(info, extra={**info.extra, SELF_CHECK_KEY: self_check.to_metadata()})
    if with_confidence and health_frames:
        reference = reference_from_model(proto.SerializeToString(), health_frames,
                                         f"{len(health_frames)} training frames",
                                         info.num_classes)
        info = replace(info, extra={**info.extra, HEALTH_KEY: reference.to_metadata()})
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    # Every artifact must be one TensorRT's ONNX parser accepts (its documented rules).
    require_tensorrt_rules(data, name=str(path))

    agreement, pixels = _parity(wrapper, data, images)
    _check_batch_axis(data, images)
    atomic_write_bytes(path, data)
    return ExportReport(path=path, size_bytes=len(data), parity_pixels=pixels,
                        parity_agreement=agreement, evaluation=evaluation)


def block_frames(size: tuple[int, int], count: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Synthetic frames of random colour blocks (6 x 8 of them): stand-ins for camera frames
    whose labels, unlike those of noise, keep their regions when the frame is resized."""
    rng = np.random.default_rng(seed)
    height, width = size
    frames = []
    for _ in range(count):
        cells = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        rows = np.arange(height) * 6 // height
        cols = np.arange(width) * 8 // width
        frames.append(np.ascontiguousarray(cells[rows][:, cols]))
    return frames


def training_frames(config: dict[str, Any], count: int = 2) -> list[np.ndarray] | None:
    """`count` raw frames spread over the training split a checkpoint was trained on, or None
    when that data cannot be read here."""
    from textseg_training.trainer.config import TrainConfig
    from textseg_training.trainer.data_setup import build_datasets

    try:
        train_config = TrainConfig.from_dict(config, source="checkpoint config")
        train_set, _, _ = build_datasets(train_config, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        picks = np.linspace(0, len(train_set) - 1, count).round().astype(int)
        return [np.ascontiguousarray(train_set.load_raw(int(i))[0]) for i in picks]
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def evaluate_artifact(data: bytes, dataset: Any, info: ModelInfo) -> dict[str, Any]:
    """Score the exported graph with ONNX Runtime on every frame of `dataset`, as shipped:
    uint8 frames at their own size in, labels at that size out, single scale, no flip."""
    import onnxruntime as ort

    from textseg_training.evaluation import ConfusionMatrix

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    matrix = ConfusionMatrix(info.num_classes, dataset.ignore_index)
    sizes = set()
    for index in range(len(dataset)):
        image, label = dataset.load_raw(index)
        labels = session.run([LABELS_OUTPUT], {INPUT_NAME: np.ascontiguousarray(image)[None]})
        matrix.update(labels[0][0].astype(np.int64), label.astype(np.int64))
        sizes.add(f"{image.shape[1]}x{image.shape[0]}")
    iou = matrix.iou()

    def percent(value: float) -> float | None:
        return round(100.0 * float(value), 2) if np.isfinite(value) else None

    return {"dataset": getattr(dataset, "name", "val"), "frames": len(dataset),
            "input_sizes": sorted(sizes), "scales": [1.0], "flip": False,
            "runtime": f"onnxruntime {ort.__version__} CPU",
            "miou": percent(matrix.miou()), "pixel_accuracy": percent(matrix.pixel_accuracy()),
            "per_class_iou": {name: percent(v)
                              for name, v in zip(info.class_names, iou, strict=True)}}


def _parity(wrapper: DeployWrapper, data: bytes, images: list[np.ndarray]) -> tuple[float, int]:
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    same = total = 0
    with torch.no_grad():
        for image in images:
            batch = np.ascontiguousarray(image)[None]
            expected = wrapper(torch.from_numpy(batch))
            expected = expected[0] if isinstance(expected, tuple) else expected
            got = session.run([LABELS_OUTPUT], {INPUT_NAME: batch})[0]
            same += int((got == expected.numpy()).sum())
            total += got.size
    return same / total, total


def _check_batch_axis(data: bytes, images: list[np.ndarray]) -> None:
    """Frames run as one batch give exactly the labels they give one by one (the node batches
    cameras on backends that gain from it)."""
    import onnxruntime as ort

    same_size = [image for image in images if image.shape == images[0].shape][:3]
    if len(same_size) < 2:
        same_size = [images[0], images[0][::-1].copy()]  # a second, different frame
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    batch = np.ascontiguousarray(np.stack(same_size))
    together = session.run([LABELS_OUTPUT], {INPUT_NAME: batch})[0]
    for index, image in enumerate(same_size):
        alone = session.run([LABELS_OUTPUT], {INPUT_NAME: np.ascontiguousarray(image)[None]})[0]
        if together.shape[0] != len(same_size) or not np.array_equal(together[index], alone[0]):
            raise RuntimeError(f"export check failed: frame {index} of a batch of "
                               f"{len(same_size)} gets other labels than on its own")


def export_random(path: str | Path, dataset: str = "camvid", backbone: str = "stdc1",
                  confidence: bool = False, input_size: tuple[int, int] | None = None,
                  seed: int = 0) -> ExportReport:
    """A freshly initialised network for a known dataset (the default artifact until trained)."""
    from textseg_training.dataset_specs import DATASETS
    from textseg_training.model import SegModelConfig, build_model

    spec = DATASETS[dataset]
    size = _check_size(input_size or spec.network_input_size)
    torch.manual_seed(seed)
    model = build_model(SegModelConfig(backbone=backbone, num_classes=len(spec.class_names)),
                        deploy=True).eval()
    info = ModelInfo(class_names=spec.class_names, palette=spec.palette,
                     network_input_size=size, architecture=f"{backbone}-seg",
                     dataset=spec.name, text_encoder="none", training_stage="random-init")
    return export_onnx(model, info, path, model.backbone.input_mean, model.backbone.input_std,
                       with_confidence=confidence)


def export_checkpoint(checkpoint: str | Path, path: str | Path, confidence: bool = False,
                      input_size: tuple[int, int] | None = None,
                      check_images: list[np.ndarray] | None = None, evaluate: bool = False,
                      metadata: dict[str, str] | None = None, ema: bool = False
                      ) -> ExportReport:
    """A trained checkpoint -> artifact; only the final text embeddings remain, as a constant.

    `evaluate`: score the artifact on the validation split the checkpoint was trained against
    and embed the figures. `metadata`: more provenance (e.g. `reproduce`: the commands).
    `ema`: export the moving average of the weights the run kept (ema_decay) instead.
    """
    from textseg_training.model import SegModelConfig, build_model
    from textseg_training.trainer.checkpoint import load_checkpoint

    data = load_checkpoint(checkpoint)
    config = SegModelConfig.from_dict(data["model_config"])
    trained = build_model(config)
    if ema and not data.get("ema"):
        raise ValueError(f"{checkpoint}: --ema, but the run kept no moving average of its "
                         "weights (train with ema_decay > 0)")
    trained.load_state_dict(data["ema"]["model"] if ema else data["model"])
    model = build_model(config, deploy=True)
    model.load_state_dict(trained.deploy_state_dict())
    model.eval()
    size = _check_size(input_size or data["network_input_size"])
    stage = data["config"]["stage"]
    info = ModelInfo(class_names=tuple(data["class_names"]),
                     palette=tuple(tuple(c) for c in data["palette"]),
                     network_input_size=size,
                     architecture=f"{config.backbone}-seg" + (f"+{config.text_fusion}"
                                                                if config.text_width else ""),
                     dataset=data["dataset"], text_encoder=data["text_encoder"],
                     training_stage=f"{stage}@{data['iteration']}" + ("+ema" if ema else ""),
                     eval_miou=None if data.get("best_miou") is None
                     else round(float(data["best_miou"]), 2),
                     extra={"training_config": json.dumps(portable(data["config"])),
                            **(metadata or {})})
    val_set = _validation_set(data["config"], model) if evaluate else None
    if check_images is None:
        # Real frames of the training split for the checks and the stored self-check.
        check_images = training_frames(data["config"])
    return export_onnx(model, info, path, model.backbone.input_mean, model.backbone.input_std,
                       with_confidence=confidence, check_images=check_images,
                       evaluate_on=val_set,
                       health_frames=training_frames(data["config"], HEALTH_FRAMES)
                       if confidence else None)


def _validation_set(config: dict[str, Any], model: nn.Module) -> Any:
    """The validation split named by a checkpoint's training config (raw frames are read)."""
    from textseg_training.trainer.config import TrainConfig
    from textseg_training.trainer.data_setup import build_datasets

    train_config = TrainConfig.from_dict(config, source="checkpoint config")
    _, eval_sets, _ = build_datasets(train_config, model.backbone.input_mean,
                                     model.backbone.input_std)
    return eval_sets["val"]


def _check_size(size) -> tuple[int, int]:
    size = tuple(int(v) for v in size)
    if len(size) != 2:
        raise ValueError(f"network input size {size} must be (height, width)")
    if min(size) < 64:
        # The network downsamples by 32; smaller inputs leave nothing of the 1/32 features.
        raise ValueError(f"network input size {size[1]}x{size[0]} (width x height): each "
                         "at least 64")
    return size
