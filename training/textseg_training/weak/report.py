"""The weak experiment's generated tables (docs/weak_supervision.md), from its results JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- weak:begin -->", "<!-- weak:end -->"
VARIANTS = ("cam", "cam+affinity", "cam+affinity+par")


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


def weak_report(path: str | Path) -> str:
    data = json.loads(Path(path).read_text())
    parts = []
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
