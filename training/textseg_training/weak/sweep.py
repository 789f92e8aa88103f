"""The pseudo-label sweep: how good are the pseudo labels of the train frames, per tile grid?

Runs the frozen tower once over the train frames, then for each grid: tags, the tag head
trained on them, and the pseudo labels of CAM, CAM + frozen affinity and + PAR, scored against
the masks (the masks only score; the pipeline sees tags). No decoder is trained: this is the
gate before any decoder training (docs/weak_supervision.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from textseg_training.data.transforms import EvalTransform, resize_label
from textseg_training.weak.cam import TagHead, pool_tiles, train_tag_head
from textseg_training.weak.metrics import PseudoLabelScore
from textseg_training.weak.pseudo import (
    PseudoLabeler,
    PseudoLabelSettings,
    affinity_transition,
    sample_grid,
)
from textseg_training.weak.tags import TileGrid, tile_tags


@dataclass
class FrameCache:
    """What the tower gives for each frame, kept in memory (fp16) for every grid."""

    cam_features: list[torch.Tensor] = field(default_factory=list)  # [C, h, w]
    transitions: list[torch.Tensor] = field(default_factory=list)  # [P, P]
    images: list[torch.Tensor] = field(default_factory=list)  # [3, H, W] normalised
    labels: list[np.ndarray] = field(default_factory=list)  # [H, W] full-size masks


def tower_pass(tower, dataset, settings: PseudoLabelSettings, size: tuple[int, int],
               frames: Sequence[int], progress: bool = True) -> FrameCache:
    transform = EvalTransform(tower.input_mean, tower.input_std, size=size)
    cache = FrameCache()
    for index in tqdm(frames, desc="tower", disable=not progress):
        image, label = dataset.load_raw(int(index))
        tensor, _ = transform(image, label)
        with torch.no_grad():
            out = tower(tensor[None])
            transition = affinity_transition(out.levels, settings)
        cache.cam_features.append(out.cam_features[0].half())
        cache.transitions.append(transition[0].half())
        cache.images.append(tensor.half())
        cache.labels.append(resize_label(label, *size) if label.shape != size else label)
    return cache


def grid_sweep(cache: FrameCache, grid: TileGrid, threshold: float, text: torch.Tensor,
               num_classes: int, ignore_index: int, class_names: Sequence[str],
               settings: PseudoLabelSettings, head_steps: int = 300, seed: int = 0,
               batch: int = 8, progress: bool = True, keep: Sequence[int] = ()
               ) -> tuple[dict[str, Any], dict[int, dict[str, np.ndarray]]]:
    """Scores of each variant on the cached frames for one grid (plus the kept frames' maps,
    for the strip image)."""
    tags = torch.from_numpy(np.stack([tile_tags(label, grid, num_classes, ignore_index,
                                                threshold) for label in cache.labels]))
    height, width = cache.labels[0].shape
    ids = torch.from_numpy(grid.tile_ids(height, width)).long()
    h, w = cache.cam_features[0].shape[-2:]
    cell_ids = sample_grid(ids[None], h, w)
    # The tag head: tile features and their tags (untagged tiles give nothing).
    pooled = torch.cat([pool_tiles(f[None].float(), cell_ids, grid.tiles)[0][0]
                        for f in cache.cam_features])
    flat_tags = tags.reshape(-1, num_classes)
    tagged = flat_tags.any(dim=1)
    torch.manual_seed(seed)
    head = TagHead(pooled.shape[1], text)
    losses = train_tag_head(head, pooled[tagged], flat_tags[tagged], steps=head_steps, seed=seed)
    head.requires_grad_(False)
    labeler = PseudoLabeler(head, settings)
    scores = {v: PseudoLabelScore(num_classes, ignore_index) for v in PseudoLabeler.VARIANTS}
    grid_h, grid_w = labeler.label_grid(height, width)
    kept: dict[int, dict[str, np.ndarray]] = {}
    for start in tqdm(range(0, len(cache.labels), batch), desc=f"pseudo labels {grid}",
                      disable=not progress):
        stop = min(start + batch, len(cache.labels))
        out = labeler.run(torch.stack([f.float() for f in cache.cam_features[start:stop]]),
                          torch.stack([t.float() for t in cache.transitions[start:stop]]),
                          torch.stack([i.float() for i in cache.images[start:stop]]),
                          ids[None].expand(stop - start, -1, -1), tags[start:stop],
                          variants=PseudoLabeler.VARIANTS)
        for offset, index in enumerate(range(start, stop)):
            target = resize_label(cache.labels[index], grid_h, grid_w)
            for variant in PseudoLabeler.VARIANTS:
                scores[variant].update(out[variant][offset].numpy(), target)
            if index in keep:
                kept[index] = {"cam": out["cam_map"][offset].numpy(),
                               "pseudo": out["cam+affinity+par"][offset].numpy()}
    result = {"grid": str(grid), "threshold": threshold,
              "tag_head_loss": [round(losses[0], 4), round(losses[-1], 4)],
              "label_grid": [grid_h, grid_w]}
    for variant, score in scores.items():
        result[variant] = score.summary(class_names)
    return result, kept


def settings_dict(settings: PseudoLabelSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["par_dilations"] = list(data["par_dilations"])
    return data


def write_results(path: str | Path, key: str, value: Any) -> Path:
    """Set `key` of the weak results JSON (atomic; other keys kept)."""
    import json

    from textseg.fileio import atomic_write_bytes

    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    return atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
