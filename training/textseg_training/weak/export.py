"""A weak-mode checkpoint -> the textseg artifact (the same contract as every model)."""

from __future__ import annotations

import json
from pathlib import Path

from textseg.engine.contract import ModelInfo
from textseg_training.export import ExportReport, export_onnx
from textseg_training.results import portable


def load_weak_model(checkpoint: str | Path, deploy: bool = True):
    """(model in eval mode, checkpoint dict, WeakConfig) of a weak-mode checkpoint."""
    from textseg_training.trainer.checkpoint import load_checkpoint
    from textseg_training.weak.config import WeakConfig
    from textseg_training.weak.model import WeakSegModel
    from textseg_training.weak.tower import build_tower

    data = load_checkpoint(checkpoint)
    if data.get("kind") != "weak":
        raise ValueError(f"{checkpoint}: not a weak-mode checkpoint")
    config = WeakConfig.from_dict(data["config"], source=f"{checkpoint} config")
    tower = build_tower(config.tower, config.tower_weights, config.allow_random_tower)
    model = WeakSegModel(tower, len(data["class_names"]), config.decoder_width,
                         config.decoder_layers, config.decoder_heads, deploy=deploy)
    model.decoder.load_state_dict(data["decoder"])
    return model.eval(), data, config


def export_weak_checkpoint(checkpoint: str | Path, path: str | Path, confidence: bool = False,
                           input_size: tuple[int, int] | None = None) -> ExportReport:
    model, data, config = load_weak_model(checkpoint)
    size = tuple(int(v) for v in (input_size or data["network_input_size"]))
    info = ModelInfo(class_names=tuple(data["class_names"]),
                     palette=tuple(tuple(c) for c in data["palette"]),
                     network_input_size=size, architecture=f"{config.tower}-weclip",
                     dataset=data["dataset"], text_encoder=data["text_encoder"],
                     training_stage=f"{config.stage}@{data['iteration']}",
                     extra={"training_config": json.dumps(portable(data["config"]))})
    return export_onnx(model, info, path, model.input_mean, model.input_std,
                       with_confidence=confidence)
