"""The one unknown-keys check of every config dataclass (training, weak, model): a typo in a
config file or a checkpoint fails loudly instead of falling back to a default."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def check_known_keys(config_class: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    """`data` unchanged if every key is a field of the config dataclass; else a clear error."""
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown} (known: {sorted(known)})")
    return data
