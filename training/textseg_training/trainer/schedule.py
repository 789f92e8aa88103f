"""Poly learning rate with linear warm-up, as a per-iteration multiplier of each group's LR."""

from __future__ import annotations

import torch


def warmup_poly_factor(iteration: int, total: int, warmup: int, warmup_start_ratio: float,
                       power: float) -> float:
    """Multiplier of the base LR at `iteration` (0-based)."""
    if warmup > 0 and iteration < warmup:
        # Linear from warmup_start_ratio * base to base over the warm-up.
        return warmup_start_ratio + (1.0 - warmup_start_ratio) * iteration / warmup
    progress = (iteration - warmup) / max(1, total - warmup)
    return max(0.0, 1.0 - progress) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup: int,
                    warmup_start_lr: float, base_lr: float, power: float
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    ratio = min(1.0, warmup_start_lr / base_lr)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: warmup_poly_factor(it, total, warmup, ratio, power))
