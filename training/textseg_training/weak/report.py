"""The weak experiment's generated tables (docs/weak_supervision.md), from its results JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- weak:begin -->", "<!-- weak:end -->"
VARIANTS = ("cam", "cam+affinity", "cam+affinity+par")
# The training rows in the order of the protocol (docs/weak_supervision.md), with what each is.
ROWS = {
    "weak_weclip": "tile tags, RFM from half-way",
    "weak_weclip_no_rfm": "tile tags, frozen affinity throughout (the paper's ablation)",
    "full_weclip": "pixel labels, same tower, decoder and schedule (the upper bound)",
    "weak_weclip_shuffled_tags": "tags of other frames (the floor)",
    "weak_weclip_random_text": "random unit vectors for the class names",
}
WEAK, FULL = "weak_weclip", "full_weclip"


def sweep_table(sweep: dict[str, Any], tag_stats: dict[str, dict[str, Any]] | None = None
                ) -> str:
    """Pseudo mIoU per grid and variant: strict (uncertain = miss), labelled pixels only, and
    coverage; with the fill-a-tile floor where known."""
    lines = ["| grid | " + " | ".join(f"{v}: mIoU / labelled only / coverage %"
                                       for v in VARIANTS) + " | fill-a-tile floor |",
             "|---|" + "---:|" * (len(VARIANTS) + 1)]
    for entry in sweep["grids"]:
        floor = (tag_stats or {}).get(entry["grid"], {}).get("tile_fill_floor_miou")
        lines.append(f"| {entry['grid']} | " + " | ".join(
            f"{entry[v]['miou']:.1f} / {entry[v]['miou_covered']:.1f} / "
            f"{entry[v]['coverage']:.0f}" for v in VARIANTS)
            + f" | {'' if floor is None else f'{floor:.1f}'} |")
    settings = sweep["settings"]
    lines += ["", f"{sweep['frames']} train frames at 480x360, tower {sweep['tower']}, text "
              f"{sweep['text_encoder']}; labels at 1/{settings['label_stride']}, uncertain "
              f"scale {settings['uncertain_scale']}, PAR {settings['par_iterations']} "
              f"iterations; {sweep['wall_seconds'] / 60:.1f} min on "
              f"{sweep['cpu']['description']}. Command: `{sweep['command']}`."]
    return "\n".join(lines)


def runs_tables(runs: list[dict[str, Any]]) -> str:
    """The training rows: val mIoU over seeds, the share of the pixel-label upper bound, the
    pseudo labels' mIoU when training starts, when the RFM starts and at the end, step and
    wall time; then per-class IoU and the paired differences that answer the protocol."""
    from textseg_training.results import mean_pm, mean_std, paired_difference

    order = [row for row in ROWS if any(r["row"] == row for r in runs)]
    order += sorted({r["row"] for r in runs} - set(order))
    by_row = {row: [r for r in runs if r["row"] == row] for row in order}
    full = mean_std([r["val_miou"] for r in by_row.get(FULL, [])])[0] if FULL in by_row \
        else None

    def pseudo(entries: list[dict[str, Any]], moment: str) -> str:
        values = [r["pseudo_labels"][moment]["miou"] for r in entries
                  if moment in (r.get("pseudo_labels") or {})]
        return mean_pm(values, 1) if values else "-"

    lines = ["| row | what it is | seeds | val mIoU % | per seed | of full | pseudo mIoU: start "
             "/ RFM start / end | step s | wall min |",
             "|---|---|---:|---:|---|---:|---|---:|---:|"]
    for row in order:
        entries = by_row[row]
        mious = [r["val_miou"] for r in entries]
        share = "" if full is None else f"{100 * mean_std(mious)[0] / full:.0f} %"
        steps = [r["step_seconds_mean"] for r in entries if r.get("step_seconds_mean")]
        walls = [r["wall_seconds"] / 60 for r in entries if r.get("wall_seconds")]
        lines.append(
            f"| {row} | {ROWS.get(row, '')} | {len(entries)} | {mean_pm(mious)} | "
            + ", ".join(f"{r['seed']}: {r['val_miou']:.2f}" for r in entries)
            + f" | {share} | {pseudo(entries, 'start')} / {pseudo(entries, 'rfm_start')} / "
            f"{pseudo(entries, 'end')} | {mean_pm(steps) if steps else '-'} | "
            f"{mean_pm(walls, 1) if walls else '-'} |")
    classes = list(runs[0]["per_class_iou"])
    lines += ["", "Per-class val IoU % (mean over seeds):", "",
              "| row | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for row in order:
        lines.append(f"| {row} | " + " | ".join(
            f"{mean_std([r['per_class_iou'][c] for r in by_row[row]])[0]:.1f}"
            for c in classes) + " |")
    pairs = [(pair, question) for pair, question in (
        (("weak_weclip_no_rfm", WEAK), "the RFM"),
        ((FULL, WEAK), "tags instead of pixel labels"),
        (("weak_weclip_shuffled_tags", WEAK), "the frame's own tags"),
        (("weak_weclip_random_text", WEAK), "the class names' text embeddings"))
        if pair[0] in by_row and pair[1] in by_row]
    if pairs:
        lines += ["", "Paired by seed:", ""]
        lines += [f"- {question}: {paired_difference(runs, *pair)}" for pair, question in pairs]
    cpus = sorted({r["cpu"]["description"] for r in runs})
    first = runs[0]
    lines += ["", f"Val: the 101 CamVid val frames at 480x360, single scale. "
              f"{first['iterations']} iterations, batch {first['config']['batch_size']}, crop "
              f"{'x'.join(map(str, first['config']['crop_size']))}, "
              f"{first['precision']}; config `{first['config_file']}` with the overrides "
              "recorded per run (`scripts/run_weak_protocol.sh`); pseudo mIoU on "
              f"{first['config']['pseudo_eval_frames']} train frames. CPU: "
              + "; ".join(cpus) + "."]
    return "\n".join(lines)


def weak_report(path: str | Path) -> str:
    data = json.loads(Path(path).read_text())
    parts = []
    if data.get("runs"):
        parts += ["Training rows (decoder on the frozen tower):", "", runs_tables(data["runs"]),
                  ""]
    if "pseudo_label_sweep" in data:
        parts += ["Pseudo labels of the train frames, per tile grid (no decoder):", "",
                  sweep_table(data["pseudo_label_sweep"], data.get("tags"))]
    if "tags" in data:
        parts += ["", "Tile tags of the 367 train frames (`textseg-train weak-tags`):", "",
                  tags_table(data["tags"])]
    if not parts:
        raise ValueError(f"{path}: no weak-supervision results recorded")
    return "\n".join(parts)


def tags_table(stats: dict[str, dict[str, Any]]) -> str:
    lines = ["| grid | threshold | tags per tile | single-tag tiles | untagged tiles | tag rate "
             "range over classes | fill-a-tile floor, pseudo mIoU |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for grid, row in stats.items():
        rates = row["tag_rate"]
        low, high = min(rates, key=rates.get), max(rates, key=rates.get)
        lines.append(f"| {grid} | {row['threshold']:g} | {row['tags_per_tile']:.2f} | "
                     f"{100 * row['single_tag_tiles']:.0f} % | "
                     f"{100 * row['untagged_tiles']:.0f} % | {rates[low]:.2f} ({low}) - "
                     f"{rates[high]:.2f} ({high}) | {row['tile_fill_floor_miou']:.1f} |")
    return "\n".join(lines)
