"""An exponential moving average of a model's weights, evaluated beside the trained weights.

Every floating-point entry of the state dict (parameters and BN statistics) follows
`ema = d * ema + (1 - d) * current` after each optimizer step, with the decay warmed up as
min(decay, (1 + t) / (10 + t)) so the early, random weights fade quickly; integer entries
(BN's step counters) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = self.current_decay()
        current = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = current[name].detach()
            if average.dtype.is_floating_point:
                average.lerp_(value.to(average.dtype), 1.0 - keep)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
