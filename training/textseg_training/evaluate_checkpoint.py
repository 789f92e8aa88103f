"""`textseg-train eval`: score a checkpoint on its validation set and write a report."""

from __future__ import annotations

from pathlib import Path

import torch

from textseg_training.evaluation import evaluate, save_confusion_png, write_report
from textseg_training.model import SegModelConfig, build_model
from textseg_training.trainer.checkpoint import load_checkpoint
from textseg_training.trainer.config import TrainConfig
from textseg_training.trainer.data_setup import build_datasets, build_val_loader
from textseg_training.trainer.distributed import DistributedContext
from textseg_training.trainer.loop import scored_output_names, scored_outputs


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | None = None,
                        flip: bool = False, scales: tuple[float, ...] = (1.0,),
                        output_dir: str | Path | None = None, device: str = "auto") -> Path:
    """Evaluate; write report.md and confusion.png; return the report path."""
    checkpoint = Path(checkpoint)
    data = load_checkpoint(checkpoint)
    settings = dict(data["config"])
    if data_root:
        settings["data_root"] = data_root
    config = TrainConfig.from_dict(settings, source=str(checkpoint))
    model_config = SegModelConfig.from_dict(data["model_config"])
    model = build_model(model_config)
    model.load_state_dict(data["model"])
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    torch_device = torch.device("cuda" if use_cuda else "cpu")
    model.to(torch_device).eval()
    _, eval_sets, spec = build_datasets(config, model.backbone.input_mean,
                                        model.backbone.input_std)
    val_set = eval_sets["val"]
    loader = build_val_loader(val_set, config, DistributedContext(device=torch_device))

    def model_fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
        return scored_outputs(model(images))

    result = evaluate(model_fn, loader, len(spec.class_names), spec.ignore_index, flip=flip,
                      scales=scales, device=torch_device,
                      categories=getattr(spec, "categories", None) or None,
                      outputs=scored_output_names(model))
    out = Path(output_dir) if output_dir else checkpoint.parent / f"eval_{checkpoint.stem}"
    out.mkdir(parents=True, exist_ok=True)
    save_confusion_png(result.confusion, spec.class_names, out / "confusion.png")
    extra = {"checkpoint": str(checkpoint), "stage": config.stage,
             "backbone": model_config.backbone, "text encoder": data["text_encoder"],
             "iteration": data["iteration"], "dataset": f"{spec.name} val ({len(val_set)} images)",
             "network input": "x".join(map(str, spec.network_input_size)),
             "flip": flip, "scales": ", ".join(map(str, scales)),
             "confusion matrix": "confusion.png"}
    if "score" in result.outputs:
        extra["score map alone, mIoU %"] = f"{100.0 * result.outputs['score'].miou:.2f}"
    return write_report(out / "report.md", result, spec.class_names,
                        f"Evaluation of {checkpoint.name}", extra)
