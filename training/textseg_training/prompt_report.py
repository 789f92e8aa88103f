"""How far a stage-2 run's prompts moved: the figures that tell whether prompt learning did
anything (issue 21), from a checkpoint alone.

The initial prompts are drawn again by the same PromptLearner from the run's seed, M and std;
the final ones are in the checkpoint. Both run through the
run's frozen text encoder to compare the class embeddings the model actually used.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from textseg_training.trainer.checkpoint import load_checkpoint
from textseg_training.trainer.config import TrainConfig


def _encoder(config: TrainConfig):
    from textseg_training.text import build_text_encoder, random_text_encoder

    options = ({"context_length": config.text_context_length}
               if config.text_context_length else {})
    if config.text_control == "random_encoder":
        return random_text_encoder(config.text_encoder, config.seed, **options)
    return build_text_encoder(config.text_encoder, weights=config.text_weights,
                              allow_random=config.allow_random_text_encoder, **options)


def mean_text_loss(run_dir: Path, last: int = 20) -> float | None:
    """Mean L_text over the last `last` logged rows of a run (its metrics.csv)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/text") not in (None, "")]
    if not rows:
        return None
    tail = rows[-last:]
    return round(sum(float(r["train/text"]) for r in tail) / len(tail), 5)


def prompt_movement(checkpoint: str | Path, summary: bool = False) -> dict[str, Any]:
    """Prompt std before / after, their relative change, and the cosine between each class's
    initial and final embedding, for a stage-2 (or e2e) checkpoint. `summary` leaves out what
    a results entry already holds (run folder, iterations, config values)."""
    from textseg_training.text import PromptLearner

    checkpoint = Path(checkpoint)
    data = load_checkpoint(checkpoint)
    state = data.get("prompt_learner")
    if not state:
        raise ValueError(f"{checkpoint} has no prompts (a stage-2 or e2e checkpoint has)")
    config = TrainConfig.from_dict(data["config"], source=str(checkpoint))
    final = state["prompts"].float()
    encoder = _encoder(config)
    names = data["class_names"]
    # The trainer's own draw: the same learner, seed, M and std.
    first = PromptLearner(encoder, names, final.shape[1], config.prompt_init_std,
                          seed=config.resolved_prompt_init_seed)
    initial = first.prompts.detach()
    with torch.no_grad():
        start = first().float()
        end = PromptLearner(encoder, names, final.shape[1], init=final)().float()
    cosine = torch.nn.functional.cosine_similarity(start, end, dim=1)
    run = {
        "checkpoint": checkpoint.parent.name,
        "prompt_lr_mult": config.prompt_lr_mult,
        "stage2_trains": config.stage2_trains,
        "iterations": data["iteration"],
    }
    return {
        **({} if summary else run),
        "prompt_std_initial": round(float(initial.std()), 5),
        "prompt_std_final": round(float(final.std()), 5),
        "prompt_relative_change": round(float((final - initial).norm() / initial.norm()), 4),
        "embedding_cosine_min": round(float(cosine.min()), 4),
        "embedding_cosine_mean": round(float(cosine.mean()), 4),
        "embedding_cosine_per_class": {name: round(float(value), 4)
                                       for name, value in zip(names, cosine, strict=True)},
        "text_loss_last20": mean_text_loss(checkpoint.parent),
    }


def movement_table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | prompt_lr_mult | iterations | prompt std (init -> final) | relative change "
            "| embedding cosine init/final (min, mean) | L_text, last 20 |")
    lines = [head, "|---|---:|---:|---|---:|---|---:|"]
    for r in rows:
        loss = "" if r["text_loss_last20"] is None else f"{r['text_loss_last20']:.4f}"
        lines.append(f"| {r['checkpoint']} | {r['prompt_lr_mult']:g} | {r['iterations']} | "
                     f"{r['prompt_std_initial']:.4f} -> {r['prompt_std_final']:.4f} | "
                     f"{r['prompt_relative_change']:.3f} | {r['embedding_cosine_min']:.4f}, "
                     f"{r['embedding_cosine_mean']:.4f} | {loss} |")
    return "\n".join(lines)
