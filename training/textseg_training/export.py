"""Export a trained network to the textseg artifact contract (one self-checking ONNX file).

The exported graph takes the camera image as uint8 RGB NHWC and returns uint8 class ids at the
input resolution: normalisation, resizing to the network resolution, bilinear upsampling of the
logits and argmax are inside the graph. The normalisation constants are read from the model's
backbone, so they exist in one place and travel inside the artifact.
"""

from __future__ import annotations

import io
import json
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
from textseg.engine.tensorrt_rules import require_tensorrt_rules
from textseg.fileio import atomic_write_bytes
from textseg_training.results import portable

OPSET = 17


class DeployWrapper(nn.Module):
    """uint8 RGB [1, H, W, 3] -> uint8 labels [1, H, W] (+ uint8 confidence)."""

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
                evaluate_on: Any = None) -> ExportReport:
    """Export `model` (deploy mode, returns 1/8 logits) with `info` as metadata.

    The file is checked (onnx.checker, then ONNX Runtime against PyTorch on `check_images`, or a
    random frame) before it atomically replaces `path`. With `evaluate_on` (a dataset with
    `load_raw`), the artifact itself is scored with ONNX Runtime on it and the figures are
    written into its metadata (key `evaluation`) and the report.
    """
    path = Path(path)
    wrapper = DeployWrapper(model, info.network_input_size, mean, std, with_confidence).eval()
    h, w = info.network_input_size
    sample = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    outputs = [LABELS_OUTPUT] + ([CONFIDENCE_OUTPUT] if with_confidence else [])
    dynamic = {INPUT_NAME: {1: "height", 2: "width"}}
    dynamic.update({name: {1: "height", 2: "width"} for name in outputs})
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(wrapper, (sample,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=outputs,
                          dynamic_axes=dynamic, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "textseg_training"
    evaluation = None
    if evaluate_on is not None:
        evaluation = evaluate_artifact(proto.SerializeToString(), evaluate_on, info)
        info = replace(info, eval_miou=evaluation["miou"],
                       extra={**info.extra, "evaluation": json.dumps(evaluation)})
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    # Every artifact must be one TensorRT's ONNX parser accepts (its documented rules).
    require_tensorrt_rules(data, name=str(path))

    images = check_images if check_images is not None else [sample[0].numpy()]
    agreement, pixels = _parity(wrapper, data, images)
    atomic_write_bytes(path, data)
    return ExportReport(path=path, size_bytes=len(data), parity_pixels=pixels,
                        parity_agreement=agreement, evaluation=evaluation)


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


def export_random(path: str | Path, dataset: str = "camvid", backbone: str = "stdc1",
                  confidence: bool = False, input_size: tuple[int, int] | None = None,
                  seed: int = 0) -> ExportReport:
    """A freshly initialised network for a known dataset (the default artifact until trained)."""
    from textseg_training.datasets import DATASETS
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
                      metadata: dict[str, str] | None = None) -> ExportReport:
    """A trained checkpoint -> artifact; only the final text embeddings remain, as a constant.

    `evaluate`: score the artifact on the validation split the checkpoint was trained against
    and embed the figures. `metadata`: more provenance (e.g. `reproduce`: the commands).
    """
    from textseg_training.model import SegModelConfig, build_model
    from textseg_training.trainer.checkpoint import load_checkpoint

    data = load_checkpoint(checkpoint)
    config = SegModelConfig.from_dict(data["model_config"])
    trained = build_model(config)
    trained.load_state_dict(data["model"])
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
                     training_stage=f"{stage}@{data['iteration']}",
                     eval_miou=None if data.get("best_miou") is None
                     else round(float(data["best_miou"]), 2),
                     extra={"training_config": json.dumps(portable(data["config"])),
                            **(metadata or {})})
    val_set = _validation_set(data["config"], model) if evaluate else None
    return export_onnx(model, info, path, model.backbone.input_mean, model.backbone.input_std,
                       with_confidence=confidence, check_images=check_images,
                       evaluate_on=val_set)


def _validation_set(config: dict[str, Any], model: nn.Module) -> Any:
    """The validation split named by a checkpoint's training config (raw frames are read)."""
    from textseg_training.trainer.config import TrainConfig
    from textseg_training.trainer.data_setup import build_datasets

    train_config = TrainConfig.from_dict(config, source="checkpoint config")
    _, val_set, _ = build_datasets(train_config, model.backbone.input_mean,
                                   model.backbone.input_std)
    return val_set


def _check_size(size) -> tuple[int, int]:
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 64:
        # The network downsamples by 32; smaller inputs leave nothing of the 1/32 features.
        raise ValueError(f"network input size {size} must be (h, w), each at least 64")
    return size
