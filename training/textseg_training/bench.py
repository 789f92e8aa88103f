"""`textseg-train bench`: training-step throughput of baseline, stage 1 and stage 2.

One step = forward, loss, backward and SGD update on one batch, as in the trainer. Stage 1 adds
only the Textual Guidance Module (fixed embeddings, no text encoder) and its auxiliary loss
L_text; `stage1_tgm_only` leaves L_text out to show which of the two costs what. Stage 2 runs
the frozen text encoder and the prompts every step on a frozen backbone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from textseg_training.losses import SegmentationLoss
from textseg_training.model import SegModelConfig, build_model


@dataclass(frozen=True)
class StepTiming:
    stage: str
    step_seconds: float
    images_per_second: float


def bench_training_steps(stages: tuple[str, ...], backbone: str, batch: int,
                         size: tuple[int, int], steps: int, text_encoder: str,
                         context_length: int | None, num_classes: int = 11,
                         ignore_index: int = 11) -> list[StepTiming]:
    from textseg_training.text import build_text_encoder

    encoder = None
    if any(stage != "baseline" for stage in stages):
        options = {"context_length": context_length} if context_length else {}
        # Random weights cost exactly what trained ones cost: speed only.
        encoder = build_text_encoder(text_encoder, allow_random=True, **options)
    names = [f"class {i}" for i in range(num_classes)]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=generator)
    labels = torch.randint(0, num_classes + 1, (batch, *size), generator=generator)
    results = []
    for stage in stages:
        torch.manual_seed(0)
        width = 0 if stage == "baseline" else encoder.width
        model = build_model(SegModelConfig(backbone, num_classes, text_width=width)).train()
        prompts = None
        if stage in ("stage1", "stage1_tgm_only"):
            model.set_text_embeddings(encoder.encode(names))
        elif stage == "stage2":
            model.freeze_backbone()
            prompts = encoder.prompt_learner(names)
        groups = model.param_groups(0.01, 5e-4)
        if prompts is not None:
            groups.append({"params": list(prompts.parameters()), "lr": 0.01,
                           "weight_decay": 0.0})
        optimizer = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
        # stage1_tgm_only: the TGM in the graph but no L_text, to separate the two costs.
        criterion = SegmentationLoss(ignore_index=ignore_index,
                                     w_text=0.0 if stage == "stage1_tgm_only" else 1.0)
        times = []
        for step in range(steps + 1):  # the first step warms up allocators and caches
            started = time.perf_counter()
            embeddings = prompts() if prompts is not None else None
            loss, _ = criterion(model(images, text_embeddings=embeddings), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step:
                times.append(time.perf_counter() - started)
        median = sorted(times)[len(times) // 2]
        results.append(StepTiming(stage, median, batch / median))
    return results


def timing_table(results: list[StepTiming], batch: int, size: tuple[int, int]) -> str:
    base = next((r for r in results if r.stage == "baseline"), None)
    lines = [f"training step, batch {batch}, {size[1]}x{size[0]}, "
             f"{torch.get_num_threads()} CPU threads (median step)", "",
             "| stage | step s | images/s | vs baseline |", "|---|---:|---:|---:|"]
    for r in results:
        versus = f"{100 * (r.step_seconds / base.step_seconds - 1):+.1f}%" if base else "n/a"
        lines.append(f"| {r.stage} | {r.step_seconds:.3f} | {r.images_per_second:.2f} | "
                     f"{versus} |")
    return "\n".join(lines)
