"""The weakly trained network: a frozen tower and WeCLIP's decoder. In deploy mode it returns
the logits at stride 16 only, as the export expects of every model."""

from __future__ import annotations

from torch import Tensor, nn

from textseg_training.weak.decoder import WeCLIPDecoder
from textseg_training.weak.tower import FrozenTower, TowerOutput


class WeakSegModel(nn.Module):
    def __init__(self, tower: FrozenTower, num_classes: int, width: int = 256, layers: int = 3,
                 heads: int = 8, deploy: bool = False) -> None:
        super().__init__()
        self.tower = tower
        self.decoder = WeCLIPDecoder(tower.level_channels, num_classes, width, layers, heads)
        self.deploy = deploy
        # Preprocessing travels with the weights (read by the data path and the export).
        self.input_mean, self.input_std = tower.input_mean, tower.input_std

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor | TowerOutput]:
        out = self.tower(x)
        logits, fused = self.decoder(out.levels)
        if self.deploy:
            return logits
        return {"out": logits, "features": fused, "tower": out}
