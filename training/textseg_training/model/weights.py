"""Reading pretrained weight files shared by the backbones' loaders."""

from __future__ import annotations

import torch
from torch import Tensor


def read_state_dict(path: str, what: str) -> dict[str, Tensor]:
    """A state dict from `path` (plain or under 'state_dict'), loaded with weights_only.

    `what` names the expected content in error messages, e.g. "STDC checkpoint".
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad or foreign file
        raise ValueError(f"cannot read {what} {path!r}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path!r} is not a state dict")
    return data
