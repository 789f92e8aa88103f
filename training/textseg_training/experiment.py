"""The text experiment's report: the CPU-scale protocol's rows beside the paper's
(docs/experiment.md).

Generated from `training/results/camvid_cpu_protocol.json` by
`textseg-train results FILE --protocol [--update docs/experiment.md]`, never typed by
hand: the page's block between the `<!-- cpu-protocol:begin -->` / `end` markers is replaced
by this output.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from textseg.fileio import atomic_write_bytes
from textseg_training.results import mean_pm, mean_std

# Row id -> the paper's CamVid val mIoU (STDC1-Seg, 960x720 crop, 10k iterations, one seed).
PAPER_CAMVID: dict[str, str] = {
    "baseline": "75.3",
    "stage1_text": "76.6",
    "stage2_text": "78.0 (76.4 in Table 5)",
    "e2e_text": "76.4",
    "stage2_text_m8": "76.3",
    "stage2_text_m14": "75.3",
    "stage2_text_m17": "76.0",
    "stage2_text_m8_prompt_wd": "75.9",
    "stage2_prompts": "78.0 (76.4 in Table 5)",
    "stage2_prompts_m8": "76.3",
    "stage2_prompts_m14": "75.3",
    "stage2_prompts_m17": "76.0",
    "stage2_prompts_m8_prompt_wd": "75.9",
}
# Issue 21's stage 2 (TGM projection frozen, the prompts at the paper's summed learning rate),
# each from a stage 1 trained on the prompts' initial embeddings.
PROMPT_STAGE2_ROWS = (
    "stage2_prompts", "stage2_prompts_frozen", "stage2_prompts_only", "stage2_prompts_m8",
    "stage2_prompts_m14", "stage2_prompts_m17", "stage2_prompts_m8_prompt_wd",
    "stage2_prompts_random_encoder",
)
PROMPT_ROWS = ("stage1_initial_prompts", *PROMPT_STAGE2_ROWS[:3],
               "stage1_initial_prompts_random_encoder", "stage2_prompts_random_encoder",
               "stage1_permuted_embeddings", *PROMPT_STAGE2_ROWS[3:7])
# Rows 2 and 5 with the TGM and with the bridge again, side by side on one machine.
RERUN_ROWS = ("stage1_text_rerun", "bridge_stage1_text_rerun", "stage2_text_rerun",
              "bridge_stage2_text_rerun")
ROW_ORDER = (
    "baseline", "stage1_text", "stage1_random_encoder", "stage1_random_embeddings",
    "stage2_text", "stage2_random_encoder", "e2e_text", "stage2_text_m8", "stage2_text_m14",
    "stage2_text_m17", "stage2_text_m8_prompt_wd", "stage2_text_frozen_prompts",
    "stage1_text_stride1", *PROMPT_ROWS,
    "bridge_sweep_n1_d64", "bridge_sweep_n1_d128", "bridge_sweep_n2_d128", "bridge_sweep_n2_d256",
    "bridge_stage1_text", "bridge_stage2_text", "bridge_stage1_random_embeddings",
    "stage1_text_efficientnet_lite1", "bridge_stage1_text_efficientnet_lite1",
    *RERUN_ROWS,
    "clip_rn50_random_weights", "clip_rn50_random_weights_stage2",
)
# Every stage-2 row above was trained before textseg 0.4: the TGM projection trained with
# the head, the prompts at a budget some 135x below the paper's (issue 21).
EARLIER_STAGE2 = "earlier stage 2 (projection trained, short prompt budget)"
ROW_NOTES: dict[str, str] = {
    **dict.fromkeys(("stage2_text", "stage2_text_m8", "stage2_text_m14", "stage2_text_m17",
                     "stage2_text_m8_prompt_wd", "bridge_stage2_text"), EARLIER_STAGE2),
    "stage1_initial_prompts": "stage 1 on the prompts' initial embeddings (M = 11)",
    "stage2_prompts": "stage 2, projection frozen, prompts at the paper's summed LR",
    "stage2_prompts_frozen": "the same, prompts kept at their initial values",
    "stage2_prompts_only": "only the prompts train (the paper's words)",
    "stage1_initial_prompts_random_encoder": "stage 1 on initial prompts through a random "
                                             "encoder",
    "stage2_prompts_random_encoder": "stage 2 through the random encoder",
    "stage1_permuted_embeddings": "class embeddings given to the wrong classes (a fixed "
                                  "derangement)",
    **dict.fromkeys(("stage2_prompts_m8", "stage2_prompts_m14", "stage2_prompts_m17",
                     "stage2_prompts_m8_prompt_wd"),
                    "from the M = 11 stage 1: starts from other embeddings"),
    "stage1_random_encoder": "control a: MiniLM architecture, random weights",
    "stage1_random_embeddings": "control b: fixed random unit vectors",
    "stage2_random_encoder": f"prompts through the random encoder; {EARLIER_STAGE2}",
    "stage1_text_stride1": "the paper's label-size L_text",
    "stage2_text_frozen_prompts": f"prompts frozen at their initial values; {EARLIER_STAGE2}",
    "bridge_sweep_n1_d64": "bridge size sweep (N layers x width d), stage 1",
    "bridge_sweep_n1_d128": "bridge size sweep, stage 1",
    "bridge_sweep_n2_d128": "bridge size sweep, stage 1 (the default size)",
    "bridge_sweep_n2_d256": "bridge size sweep, stage 1",
    "stage1_text_efficientnet_lite1": "the other backbone, TGM",
    "bridge_stage1_text_efficientnet_lite1": "the other backbone, bridge",
    **dict.fromkeys(RERUN_ROWS, "TGM and bridge rerun side by side on one machine"),
    **dict.fromkeys(("stage2_text_rerun", "bridge_stage2_text_rerun"),
                    f"rerun side by side on one machine; {EARLIER_STAGE2}"),
    "clip_rn50_random_weights": "smoke run of the CLIP path, not a result",
    "clip_rn50_random_weights_stage2": "smoke run of the CLIP path, not a result (CLIP "
                                       "needs no projection)",
}
# (row_a, row_b, what row_b - row_a asks, the paper's difference or "")
COMPARISONS: tuple[tuple[str, str, str, str], ...] = (
    ("baseline", "stage1_text", "does stage 1's text help?", "+1.3"),
    ("stage1_text", "stage2_text", "does prompt tuning add to it?", "+1.4"),
    ("baseline", "stage2_text", "both stages against no text", "+2.7"),
    ("stage2_text", "e2e_text", "one stage instead of two", "-1.6"),
    ("stage1_random_encoder", "stage1_text", "language prior vs random encoder (a)", ""),
    ("stage1_random_embeddings", "stage1_text", "language prior vs random vectors (b)", ""),
    ("baseline", "stage1_random_encoder", "random encoder vs no text", ""),
    ("baseline", "stage1_random_embeddings", "K extra channels alone vs no text", ""),
    ("stage1_random_encoder", "stage2_random_encoder", "prompts through a random encoder", ""),
    ("stage2_random_encoder", "stage2_text", "stage 2: prior vs random encoder", ""),
    ("stage2_text_m8", "stage2_text_m8_prompt_wd", "weight decay on prompts (M = 8)", "-0.4"),
    ("stage2_text_frozen_prompts", "stage2_text", "prompt learning itself (same stage 2, "
     "prompts frozen)", ""),
    ("stage1_text", "stage2_text_frozen_prompts", "stage 2's extra head training alone", ""),
    ("stage1_text", "stage1_text_stride1", "L_text at label size vs every 8th pixel", ""),
    ("stage1_text", "bridge_stage1_text", "bridge vs TGM, stage 1", ""),
    ("stage2_text", "bridge_stage2_text", "bridge vs TGM, stage 2", ""),
    ("bridge_stage1_random_embeddings", "bridge_stage1_text", "bridge: prior vs random vectors",
     ""),
    ("stage1_text_efficientnet_lite1", "bridge_stage1_text_efficientnet_lite1",
     "bridge vs TGM on EfficientNet-Lite1", ""),
    ("stage1_text_rerun", "bridge_stage1_text_rerun", "bridge vs TGM, stage 1, on one machine",
     ""),
    ("stage2_text_rerun", "bridge_stage2_text_rerun", "bridge vs TGM, stage 2, on one machine",
     ""),
    ("stage1_text", "stage1_text_rerun", "the same TGM run, another machine", ""),
    ("bridge_stage1_text", "bridge_stage1_text_rerun", "the same bridge run, another machine", ""),
)
# Issue 21's questions, under the new stage 2.
PROMPT_COMPARISONS: tuple[tuple[str, str, str, str], ...] = (
    ("stage1_initial_prompts", "stage2_prompts", "does the new stage 2 add to stage 1?", "+1.4"),
    ("stage2_prompts_frozen", "stage2_prompts", "prompt learning itself (prompts frozen vs "
     "learned)", ""),
    ("stage1_initial_prompts", "stage2_prompts_frozen", "the head's extra training alone", ""),
    ("stage1_initial_prompts", "stage2_prompts_only", "the prompts alone (everything else "
     "frozen)", ""),
    ("stage1_text", "stage1_initial_prompts", "stage 1 on initial prompts vs on class names",
     ""),
    ("stage1_permuted_embeddings", "stage1_text", "right vs wrong class for each embedding", ""),
    ("stage1_initial_prompts_random_encoder", "stage1_initial_prompts",
     "stage 1: prior vs random encoder", ""),
    ("stage2_prompts_random_encoder", "stage2_prompts", "stage 2: prior vs random encoder", ""),
    ("stage2_prompts_m8", "stage2_prompts_m8_prompt_wd", "weight decay on prompts (M = 8)",
     "-0.4"),
)
THIN_CLASSES = ("pole", "traffic sign", "fence", "pedestrian", "bicyclist")
# The thin-class gains are shown for these (row_a, row_b) pairs.
THIN_CLASS_PAIRS = (("baseline", "stage1_text"), ("baseline", "stage2_text"),
                    ("stage1_random_embeddings", "stage1_text"),
                    ("stage1_text", "bridge_stage1_text"))

BEGIN, END = "<!-- cpu-protocol:begin -->", "<!-- cpu-protocol:end -->"


def _by_seed(runs: list[dict[str, Any]], row: str) -> dict[int, dict[str, Any]]:
    return {r["seed"]: r for r in runs if r["row"] == row}


def main_table(runs: list[dict[str, Any]]) -> str:
    present = [row for row in ROW_ORDER if _by_seed(runs, row)]
    present += sorted({r["row"] for r in runs} - set(ROW_ORDER))
    lines = ["| row | paper | ours: val mIoU % (mean ± std) | per seed | iterations | "
             "min / run | note |", "|---|---:|---:|---|---:|---:|---|"]
    for row in present:
        entries = sorted(_by_seed(runs, row).values(), key=lambda r: r["seed"])
        mious = [r["val_miou"] for r in entries]
        per_seed = ", ".join(f"{r['val_miou']:.2f}" for r in entries)
        walls = [r["wall_seconds"] for r in entries if r.get("wall_seconds") is not None]
        wall = f"{sum(walls) / len(walls) / 60:.1f}" if walls else "n/a"
        iterations = ", ".join(sorted({str(r["iterations"]) for r in entries}))
        lines.append(f"| `{row}` | {PAPER_CAMVID.get(row, '')} | {mean_pm(mious)} | {per_seed} | "
                     f"{iterations} | {wall} | {ROW_NOTES.get(row, '')} |")
    return "\n".join(lines)


def _spread(runs: list[dict[str, Any]], *rows: str, metric: str = "val_miou") -> float:
    """The seed-to-seed spread a difference is judged against: the largest std of the rows."""
    stds = [mean_std(values)[1] for row in rows
            if (values := [r[metric] for r in _by_seed(runs, row).values()
                           if r.get(metric) is not None])]
    return max((s for s in stds if not math.isnan(s)), default=float("nan"))


def comparisons_table(runs: list[dict[str, Any]],
                      comparisons: tuple[tuple[str, str, str, str], ...] = COMPARISONS,
                      metric: str = "val_miou") -> str:
    """Paired differences of `metric` (val_miou or score_map_miou) between rows, by seed."""
    main_spread = max((_spread(runs, row, metric=metric) for row in ROW_ORDER[:7]
                       if _by_seed(runs, row)), default=float("nan"))
    lines = ["| row_b - row_a | question | paper | ours (mean over seeds) | per seed | "
             "beyond the seed spread? |", "|---|---|---:|---:|---|---|"]
    for row_a, row_b, question, paper in comparisons:
        a, b = _by_seed(runs, row_a), _by_seed(runs, row_b)
        seeds = sorted(s for s in set(a) & set(b)
                       if a[s].get(metric) is not None and b[s].get(metric) is not None)
        if not seeds:
            continue
        diffs = [b[s][metric] - a[s][metric] for s in seeds]
        mean, std = mean_std(diffs)
        spread = _spread(runs, row_a, row_b, metric=metric)
        if math.isnan(spread):  # one seed on each side: judge against rows 1-7's spread
            spread, whose = main_spread, "rows 1-7's"
        else:
            whose = "the rows'"
        if math.isnan(spread):
            verdict = "n/a (one seed)"
        else:
            verdict = (f"{'**yes**' if abs(mean) > spread else 'no'} ({whose} largest std "
                       f"{spread:.2f})")
        ours = f"{mean:+.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")
        per_seed = ", ".join(f"{d:+.2f}" for d in diffs)
        lines.append(f"| `{row_b}` - `{row_a}` | {question} | {paper} | {ours} | {per_seed} | "
                     f"{verdict} |")
    return "\n".join(lines)


def _cpu(entry: dict[str, Any]) -> str:
    cpu = entry.get("cpu")
    return cpu["description"] if cpu else "not recorded"


def prompt_rows_table(runs: list[dict[str, Any]]) -> str:
    """Issue 21's stage-2 rows: the prediction's mIoU, the score map's alone (argmax over the K
    cosine channels: what only the text can change), how far the prompts moved, the cosine
    between each class's initial and final embedding, and the CPU and precision of each run."""
    lines = ["| row | seeds | val mIoU % | score map alone, mIoU % (per seed) | prompt relative "
             "change | embedding cosine init/final: mean (lowest class) | CPU, precision |",
             "|---|---:|---:|---|---:|---|---|"]
    for row in ("stage1_initial_prompts", *PROMPT_STAGE2_ROWS,
                "stage1_initial_prompts_random_encoder"):
        entries = sorted(_by_seed(runs, row).values(), key=lambda r: r["seed"])
        if not entries:
            continue
        scores = [r.get("score_map_miou") for r in entries]
        score = ("not recorded" if None in scores else
                 f"{mean_pm(scores)} ({', '.join(f'{v:.2f}' for v in scores)})")
        moved = [r["prompts"] for r in entries if r.get("prompts")]
        change = mean_pm([m["prompt_relative_change"] for m in moved]) if moved else ""
        cosine = ""
        if moved:
            lowest = min(((c, name) for m in moved
                          for name, c in m["embedding_cosine_per_class"].items()))
            cosine = (f"{mean_pm([m['embedding_cosine_mean'] for m in moved])} "
                      f"({lowest[1]} {lowest[0]:.2f})")
        machines = "; ".join(sorted({f"{_cpu(r)}, {r.get('precision')}" for r in entries}))
        lines.append(f"| `{row}` | {len(entries)} | {mean_pm([r['val_miou'] for r in entries])} | "
                     f"{score} | {change} | {cosine} | {machines} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def thin_class_table(runs: list[dict[str, Any]]) -> str:
    lines = ["| IoU gain, paired by seed | " + " | ".join(THIN_CLASSES) + " | mIoU |",
             "|---|" + "---:|" * (len(THIN_CLASSES) + 1)]
    rows = 0
    for row_a, row_b in THIN_CLASS_PAIRS:
        a, b = _by_seed(runs, row_a), _by_seed(runs, row_b)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        cells = []
        for name in THIN_CLASSES:
            gains = [b[s]["per_class_iou"][name] - a[s]["per_class_iou"][name] for s in seeds
                     if b[s]["per_class_iou"].get(name) is not None
                     and a[s]["per_class_iou"].get(name) is not None]
            cells.append(f"{sum(gains) / len(gains):+.1f}" if gains else "n/a")
        miou = sum(b[s]["val_miou"] - a[s]["val_miou"] for s in seeds) / len(seeds)
        seeds_text = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
        lines.append(f"| `{row_b}` - `{row_a}` ({seeds_text}) | " + " | ".join(cells) +
                     f" | {miou:+.2f} |")
        rows += 1
    return "\n".join(lines) if rows else ""


def protocol_report(runs: list[dict[str, Any]]) -> str:
    if not runs:
        raise ValueError("no runs recorded: run scripts/run_cpu_protocol.sh first")
    walls = [r["wall_seconds"] for r in runs if r.get("wall_seconds") is not None]
    hours, minutes = divmod(round(sum(walls) / 60), 60)
    total = (f"{len(runs)} runs, {hours} h {minutes:02d} min of training and evaluation in all "
             "(the sum of the runs' wall times, one run at a time on this 2-core machine; runs "
             "that shared the cores with other work took longer).")
    parts = ["Generated by `textseg-train results training/results/camvid_cpu_protocol.json "
             "--protocol --update docs/experiment.md`.", "", main_table(runs), "", total, "",
             "Paired differences (same seed = same batches, augmentation and initial head):",
             "", comparisons_table(runs)]
    prompts = prompt_rows_table(runs)
    if prompts:
        parts += ["", "### Stage 2 as the authors run it (issue 21)", "",
                  "Stage 1 trained on the prompts' initial embeddings, then stage 2 with the "
                  "backbone, detail head and TGM projection frozen; the score map alone is the "
                  "argmax over the TGM's K cosine channels, the one output only the text moves.",
                  "", prompts, "", "Paired differences, val mIoU:", "",
                  comparisons_table(runs, PROMPT_COMPARISONS), "",
                  "Paired differences, the score map alone:", "",
                  comparisons_table(runs, PROMPT_COMPARISONS, metric="score_map_miou")]
    thin = thin_class_table(runs)
    if thin:
        parts += ["", "Thin classes (mean IoU gain in points):", "", thin]
    return "\n".join(parts)


def update_marked_block(path: str | Path, text: str, begin: str = BEGIN, end_marker: str = END
                        ) -> Path:
    """Replace what lies between the `begin` and `end_marker` lines of `path` with `text`."""
    BEGIN, END = begin, end_marker  # noqa: N806 (the markers, as in the messages below)
    path = Path(path)
    content = path.read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no '{BEGIN}' ... '{END}' block to update")
    new = content[: start + len(BEGIN)] + "\n" + text + "\n" + content[end:]
    return atomic_write_bytes(path, new.encode())


def marked_block(path: str | Path) -> str:
    """The text between the markers of `path` (as `update_marked_block` wrote it)."""
    content = Path(path).read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no '{BEGIN}' ... '{END}' block")
    return content[start + len(BEGIN): end].strip("\n")
