"""`textseg-train bench`: training-step throughput of baseline, stage 1 and stage 2.

One step = forward, loss, backward and SGD update on one batch, as in the trainer. Stage 1 adds
only the Textual Guidance Module (fixed embeddings, no text encoder) and its auxiliary loss
L_text, taken on every 8th label pixel as the trainer does by default;
`stage1_label_size` takes L_text on every label pixel as the paper does, and
`stage1_tgm_only` leaves L_text out, to show which part costs what. Stage 2 runs the frozen
text encoder and the prompts every step on a frozen backbone.

Each stage can be timed in several numeric modes (`--modes`): fp32, fp32-cl (channels_last),
bf16 (bfloat16 autocast) and bf16-cl, as the trainer's `precision` / `channels_last` settings
run them (autocast on the forward only, loss in fp32).

All (stage, mode) pairs are built first and then timed in alternating rounds, so that a slow
spell of a shared machine lands on every one alike; each figure is its median step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from textseg_training.losses import SegmentationLoss
from textseg_training.model import SegModelConfig, build_model
from textseg_training.trainer.config import CPU_TEXT_LOSS_STRIDE
from textseg_training.trainer.precision import Precision

STAGES = ("baseline", "stage1", "stage1_label_size", "stage1_tgm_only", "stage2")
# mode -> (precision, channels_last)
MODES = {"fp32": ("fp32", False), "fp32-cl": ("fp32", True), "bf16": ("bf16", False),
         "bf16-cl": ("bf16", True)}


@dataclass(frozen=True)
class StepTiming:
    stage: str
    step_seconds: float
    images_per_second: float
    # Median over rounds of (this stage's round median / the baseline's), with the quartiles:
    # pairing within a round cancels the slow drift of a shared machine. None without baseline.
    versus_baseline: tuple[float, float, float] | None = None
    mode: str = "fp32"
    # Median over rounds of (the same stage in fp32 / this mode): the mode's speed-up.
    speedup_vs_fp32: float | None = None


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return pick(0.25), pick(0.5), pick(0.75)


def bench_training_steps(stages: tuple[str, ...], backbone: str, batch: int,
                         size: tuple[int, int], steps: int, text_encoder: str,
                         context_length: int | None, num_classes: int = 11,
                         ignore_index: int = 11, rounds: int = 3,
                         modes: tuple[str, ...] = ("fp32",)) -> list[StepTiming]:
    from textseg_training.text import PromptLearner, build_text_encoder

    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}: choose from {', '.join(STAGES)}")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown modes {unknown}: choose from {', '.join(MODES)}")
    encoder = None
    if any(stage != "baseline" for stage in stages):
        options = {"context_length": context_length} if context_length else {}
        # Random weights cost exactly what trained ones cost: speed only.
        encoder = build_text_encoder(text_encoder, allow_random=True, **options)
    names = [f"class {i}" for i in range(num_classes)]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=generator)
    labels = torch.randint(0, num_classes + 1, (batch, *size), generator=generator)

    def make_step(stage: str, mode: str):
        torch.manual_seed(0)
        precision_name, channels_last = MODES[mode]
        precision = Precision(precision_name, "cpu")
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        inputs = images.to(memory_format=memory_format)
        width = 0 if stage == "baseline" else encoder.width
        model = build_model(SegModelConfig(backbone, num_classes, text_width=width)).train()
        model.to(memory_format=memory_format)
        prompts = None
        if stage.startswith("stage1"):
            model.set_text_embeddings(encoder.encode(names))
        elif stage == "stage2":
            model.freeze_backbone()
            model.freeze_text_projection()  # stage 2 as it trains since textseg 0.4
            prompts = PromptLearner(encoder, names)
        groups = model.param_groups(0.01, 5e-4)
        if prompts is not None:
            groups.append({"params": list(prompts.parameters()), "lr": 0.01,
                           "weight_decay": 0.0})
        optimizer = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
        criterion = SegmentationLoss(ignore_index=ignore_index,
                                     w_text=0.0 if stage == "stage1_tgm_only" else 1.0,
                                     w_detail=0.0 if stage == "stage2" else 1.0,  # as trained
                                     text_loss_stride=1 if stage == "stage1_label_size"
                                     else CPU_TEXT_LOSS_STRIDE)

        def step() -> float:
            started = time.perf_counter()
            embeddings = prompts() if prompts is not None else None
            with precision.autocast():
                outputs = model(inputs, text_embeddings=embeddings)
            loss, _ = criterion({k: v.float() for k, v in outputs.items()}, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return time.perf_counter() - started

        step()  # warms up allocators and caches
        return step

    runners = {(stage, mode): make_step(stage, mode) for mode in modes for stage in stages}
    rounds_timed: list[dict[tuple[str, str], float]] = []  # per round: key -> median step
    for _ in range(rounds):
        rounds_timed.append({key: _median([step() for _ in range(steps)])
                             for key, step in runners.items()})
    results = []
    for stage, mode in runners:
        median = _median([timed[stage, mode] for timed in rounds_timed])
        versus = speedup = None
        if ("baseline", mode) in runners:
            versus = _quartiles([timed[stage, mode] / timed["baseline", mode] - 1
                                 for timed in rounds_timed])
        if (stage, "fp32") in runners:
            speedup = _median([timed[stage, "fp32"] / timed[stage, mode]
                               for timed in rounds_timed])
        results.append(StepTiming(stage, median, batch / median, versus, mode, speedup))
    return results


def timing_table(results: list[StepTiming], batch: int, size: tuple[int, int],
                 backbone: str = "") -> str:
    lines = [f"training step{f', {backbone}' if backbone else ''}, batch {batch}, "
             f"{size[1]}x{size[0]}, {torch.get_num_threads()} CPU threads (median over rounds)",
             "",
             "| stage | mode | step s | images/s | vs fp32 | vs baseline (paired by round) "
             "| quartiles |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        if r.versus_baseline is None:  # no baseline among the stages
            versus, spread = "n/a", ""
        else:
            low, mid, high = (100 * v for v in r.versus_baseline)
            versus, spread = f"{mid:+.1f}%", f"{low:+.1f}% .. {high:+.1f}%"
        speedup = "n/a" if r.speedup_vs_fp32 is None else f"{r.speedup_vs_fp32:.2f}x"
        lines.append(f"| {r.stage} | {r.mode} | {r.step_seconds:.3f} | "
                     f"{r.images_per_second:.2f} | {speedup} | {versus} | {spread} |")
    return "\n".join(lines)
