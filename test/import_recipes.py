"""The recipes of docs/bring_your_model.md, run as the page writes them, and the framework's own
labels to compare an imported model with (test_import.py, ros/test_imported_model_node.py)."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Pixels whose two best classes differ by less than this fraction of the frame's largest
# |logit| are numerical ties: ONNX Runtime and PyTorch may order them either way.
from textseg.tools.importer import TIE_MARGIN

DOC = Path(__file__).resolve().parents[1] / "docs" / "bring_your_model.md"
RECIPES = ("smp", "segformer", "ids")


# the library each recipe exports with
NEEDS = {"smp": "segmentation_models_pytorch", "segformer": "transformers",
         "ids": "segmentation_models_pytorch"}


def require_recipe(name: str) -> None:
    """Skip the calling test when the recipe's library is not installed."""
    import pytest

    from textseg_training.text import ensure_torchvision_importable

    ensure_torchvision_importable()  # smp imports timm, which imports torchvision
    pytest.importorskip(NEEDS[name], reason=f"the {name} recipe needs {NEEDS[name]}")


@dataclass
class Recipe:
    name: str
    python: str
    command: list[str]  # `textseg import ...` arguments, without the program name


def read_recipe(name: str) -> Recipe:
    text = DOC.read_text()
    marker = f"<!-- recipe: {name} -->"
    if marker not in text:
        raise KeyError(f"{DOC.name} has no recipe {name!r}")
    after = text.split(marker, 1)[1]
    python = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    bash = re.search(r"```bash\n(.*?)```", after, re.S).group(1)
    command = shlex.split(bash.replace("\\\n", " "))
    assert command[:2] == ["textseg", "import"], command
    return Recipe(name, python, command[1:])


def run_recipe(name: str, folder: Path, frames: Path) -> tuple[Any, Path, Recipe]:
    """Export the recipe's model in `folder` and import it with `textseg import`; returns
    (the framework's model, the imported file, the recipe)."""
    from textseg.cli import main

    require_recipe(name)
    recipe = read_recipe(name)
    namespace: dict[str, Any] = {}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(recipe.python, f"{DOC.name}:{name}", "exec"), namespace)  # noqa: S102
        arguments = [str(frames) if a == "$FRAMES" else a for a in recipe.command]
        if main(arguments) != 0:
            raise RuntimeError(f"textseg {' '.join(arguments)} failed")
    finally:
        os.chdir(cwd)
    output = folder / recipe.command[recipe.command.index("-o") + 1]
    return namespace["model"], output, recipe


def framework_labels(name: str, model, rgb: np.ndarray, network_size: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, tie mask) the framework itself gives for `rgb` at its size: the same resize
    to the network size, the recipe's normalisation, the model, then the logits bilinear to
    the frame (argmax), or the ids nearest to the frame."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    height, width = rgb.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    if name == "ids":
        x = x[:, [2, 1, 0]]  # BGR, 0..255
    x = F.interpolate(x, size=network_size, mode="bilinear", align_corners=False)
    if name != "ids":
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (x / 255.0 - mean) / std
    with torch.no_grad():
        if name == "ids":
            ids = model(x)[0].numpy()
            logits = model.net(x)
        else:
            out = model(x)
            logits = getattr(out, "logits", out)  # transformers returns a ModelOutput
    if name == "ids":  # class ids: nearest (floor) to the frame, as the import resizes them
        rows = np.floor(np.arange(height) * ids.shape[0] / height).astype(int)
        cols = np.floor(np.arange(width) * ids.shape[1] / width).astype(int)
        labels = ids[rows][:, cols]
        top2 = torch.topk(logits, 2, dim=1).values[0].numpy()
        margin = (top2[0] - top2[1])[rows][:, cols] / float(logits.abs().max())
    else:
        logits = F.interpolate(logits, size=(height, width), mode="bilinear",
                               align_corners=False)
        labels = logits.argmax(1)[0].numpy()
        top2 = torch.topk(logits, 2, dim=1).values[0].numpy()
        margin = (top2[0] - top2[1]) / float(logits.abs().max())
    return labels.astype(np.uint8), margin <= TIE_MARGIN


def assert_same_labels(labels: np.ndarray, expected: np.ndarray, ties: np.ndarray) -> None:
    assert labels.shape == expected.shape, (labels.shape, expected.shape)
    differ = labels != expected
    assert not (differ & ~ties).any(), (
        f"{int((differ & ~ties).sum())} pixels differ away from numerical ties")
    assert ties.mean() < 0.01, f"{100 * ties.mean():.3f} % of the pixels are ties"
