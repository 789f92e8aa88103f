"""The weak mode's tools behind `textseg-train weak-tags` and `textseg-train weak-pseudo`."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from textseg_training.dataset_specs import CAMVID
from textseg_training.weak.pseudo import UNCERTAIN, PseudoLabelSettings
from textseg_training.weak.tags import TileGrid, make_tags, tile_fill_floor


def _train_split(data_root: str):
    from textseg_training.data import camvid

    return camvid(Path(data_root), "train")


def make_tags_command(data_root: str, grid: str, threshold: float, output: str,
                      results: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Make the tags file (the only step that reads train masks) and print its statistics."""
    dataset = _train_split(data_root)
    tags = make_tags(dataset, TileGrid.parse(grid), threshold, data_root, CAMVID.class_names,
                     progress=progress)
    path = tags.save(output)
    stats = tags.statistics()
    stats["tile_fill_floor_miou"] = round(tile_fill_floor(tags, dataset), 2)
    rates = stats["tag_rate"]
    low, high = min(rates, key=rates.get), max(rates, key=rates.get)
    print(f"\nwrote {path}: {stats['images']} frames x {tags.grid.tiles} tiles\n\n"
          "| grid | threshold | tags per tile | single-tag tiles | untagged tiles | tag rate "
          "range | fill-a-tile floor, pseudo mIoU |\n|---|---:|---:|---:|---:|---|---:|\n"
          f"| {stats['grid']} | {threshold:g} | {stats['tags_per_tile']:.2f} | "
          f"{100 * stats['single_tag_tiles']:.0f} % | {100 * stats['untagged_tiles']:.0f} % | "
          f"{rates[low]:.2f} ({low}) - {rates[high]:.2f} ({high}) | "
          f"{stats['tile_fill_floor_miou']:.1f} |")
    if results:
        import json

        from textseg_training.weak.sweep import write_results

        known = json.loads(Path(results).read_text()).get("tags", {}) \
            if Path(results).is_file() else {}
        known[str(tags.grid)] = stats
        write_results(results, "tags", known)
        print(f"recorded in {results}")
    return stats


def parse_settings(items: list[str]) -> PseudoLabelSettings:
    """KEY=VALUE overrides of PseudoLabelSettings (unknown keys are errors)."""
    import yaml

    settings = PseudoLabelSettings()
    known = {f.name for f in fields(settings)}
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        parsed = yaml.safe_load(value)
        changes[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return replace(settings, **changes)


def _colour(labels: np.ndarray, palette) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    image = table[np.where(labels == UNCERTAIN, 255, labels).astype(np.uint8)]
    return image  # uncertain / void: black


def write_strip(path: str | Path, rows: list[list[np.ndarray]], height: int = 120) -> Path:
    """One row per frame of RGB panels, each resized to `height` (nearest for label maps)."""
    from textseg.fileio import atomic_write_bytes

    lines = []
    for panels in rows:
        resized = [cv2.resize(p, (int(p.shape[1] * height / p.shape[0]), height),
                              interpolation=cv2.INTER_NEAREST) for p in panels]
        gap = np.full((height, 4, 3), 255, dtype=np.uint8)
        line = [resized[0]]
        for panel in resized[1:]:
            line += [gap, panel]
        lines.append(np.concatenate(line, axis=1))
    strip = np.concatenate(lines, axis=0)
    ok, data = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    return atomic_write_bytes(path, data.tobytes())


def pseudo_sweep_command(data_root: str, grids: list[str], threshold: float, tower_name: str,
                         settings: PseudoLabelSettings, frames: int | None, results: str | None,
                         strip: str | None, seed: int = 0, progress: bool = True
                         ) -> dict[str, Any]:
    """The pseudo-label sweep over `grids` (docs/weak_supervision.md), printed as a table and
    recorded under "pseudo_label_sweep" in `results`."""
    import torch

    from textseg.cpu import cpu_features
    from textseg_training.results import portable
    from textseg_training.text import build_text_encoder, class_embeddings
    from textseg_training.weak.sweep import (
        grid_sweep,
        settings_dict,
        tower_pass,
        write_results,
    )
    from textseg_training.weak.tower import build_tower

    strip_grid = "3x4" if "3x4" in grids else grids[-1]  # the design note's default grid
    torch.manual_seed(seed)
    started = time.perf_counter()
    dataset = _train_split(data_root)
    count = len(dataset) if frames is None else min(frames, len(dataset))
    picks = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    encoder = build_text_encoder("minilm-l6-v2")
    text = class_embeddings(encoder, CAMVID.class_names,
                            cache_dir=Path.home() / ".cache" / "textseg" / "text")
    tower = build_tower(tower_name)
    size = tuple(CAMVID.network_input_size)
    cache = tower_pass(tower, dataset, settings, size, picks, progress)
    strip_frames = picks[:: max(1, len(picks) // 4)][:4]
    keep = [picks.index(i) for i in strip_frames]
    entries, strip_rows = [], []
    for grid in grids:
        entry, kept = grid_sweep(cache, TileGrid.parse(grid), threshold, text,
                                 len(CAMVID.class_names), CAMVID.ignore_index,
                                 CAMVID.class_names, settings, seed=seed, progress=progress,
                                 keep=keep if grid == strip_grid else ())
        entries.append(entry)
        for position in keep if grid == strip_grid else ():
            maps = kept[position]
            image, label = dataset.load_raw(picks[position])
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            cam = (255 * maps["cam"].max(axis=0)).clip(0, 255).astype(np.uint8)
            cam = cv2.applyColorMap(cam, cv2.COLORMAP_JET)[..., ::-1]
            gt = np.where(label == CAMVID.ignore_index, UNCERTAIN, label)
            strip_rows.append([image, _colour(gt, CAMVID.palette), cam,
                               _colour(maps["pseudo"], CAMVID.palette)])
    variants = ("cam", "cam+affinity", "cam+affinity+par")
    print("\n| grid | " + " | ".join(f"{v}: mIoU (labelled only, coverage %)" for v in variants)
          + " |\n|---|" + "---:|" * len(variants))
    for entry in entries:
        print(f"| {entry['grid']} | " + " | ".join(
            f"{entry[v]['miou']:.1f} ({entry[v]['miou_covered']:.1f}, "
            f"{entry[v]['coverage']:.0f})" for v in variants) + " |")
    record = {
        "command": "textseg-train " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "tower": tower_name, "text_encoder": encoder.identity, "frames": count,
        "settings": settings_dict(settings), "seed": seed, "grids": entries,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpu": cpu_features().record(),
        "note": "train frames at 480x360, scored at the label grid (1/label_stride) against "
                "the masks, which only score; mIoU counts uncertain pixels as misses, "
                "miou_covered scores the labelled pixels only",
    }
    if results:
        write_results(results, "pseudo_label_sweep", portable(record))
        print(f"recorded in {results}")
    if strip and strip_rows:
        print(f"strip: {write_strip(strip, strip_rows)} (image | ground truth | CAM | "
              "pseudo label, uncertain in black)")
    return record


def strip_command(checkpoint: str, output: str, frames: int = 4) -> Path:
    """image | ground truth | CAM | pseudo label | prediction for `frames` train frames of a
    weak-mode run (the pseudo labels as the run made them last: the RFM's once it started)."""
    from textseg_training.trainer.checkpoint import load_checkpoint
    from textseg_training.weak.config import WeakConfig
    from textseg_training.weak.trainer import WeakTrainer

    data = load_checkpoint(checkpoint)
    if data.get("kind") != "weak" or data["config"].get("stage") != "weak":
        raise ValueError(f"{checkpoint}: not a checkpoint of a `stage: weak` run (the strip "
                         "needs its tags and tag head)")
    if frames < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    trainer = WeakTrainer(WeakConfig.from_dict(data["config"], source=f"{checkpoint} config"),
                          resume=checkpoint, progress=False)
    height, width = CAMVID.network_input_size
    count = len(trainer.train_set)
    rows = []
    for index in range(0, count, max(1, count // frames))[:frames]:
        maps = trainer.frame_maps(index)
        image = cv2.resize(trainer.train_set.load_image(index), (width, height),
                           interpolation=cv2.INTER_AREA)
        mask = cv2.resize(trainer.train_mask(index), (width, height),
                          interpolation=cv2.INTER_NEAREST)
        cam = cv2.resize(maps["cam"].max(axis=0), (width, height), interpolation=cv2.INTER_LINEAR)
        cam = cv2.applyColorMap((255 * cam).clip(0, 255).astype(np.uint8),
                                cv2.COLORMAP_JET)[..., ::-1]
        gt = np.where(mask == CAMVID.ignore_index, UNCERTAIN, mask)
        rows.append([image, _colour(gt, CAMVID.palette), cam,
                     _colour(maps["pseudo"], CAMVID.palette),
                     _colour(maps["prediction"], CAMVID.palette)])
    path = write_strip(output, rows)
    print(f"strip: {path} (train frames of {checkpoint} at iteration {trainer.iteration}: image "
          "| ground truth | CAM | pseudo label | prediction; uncertain and void in black)")
    return path
