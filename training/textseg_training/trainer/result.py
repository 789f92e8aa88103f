"""What a finished run returns, for every trainer (the method's stages and the weak mode)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    output_dir: Path
    iterations: int
    best_miou: float | None
    last_checkpoint: Path
    images_per_second: float
    final_eval: Any = None  # EvalResult of the last evaluation (at the final iteration)
    wall_seconds: float | None = 0.0  # the whole run's, across resumes; None when unknown
    # Every split of the last evaluation: "val", "heldout" (train_exclude), and the same with
    # "_ema" for the weights' moving average (ema_decay).
    final_evals: dict[str, Any] | None = None
