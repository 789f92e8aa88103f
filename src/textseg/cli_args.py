"""Argument types and choices shared by every textseg command line (`textseg`, its command
groups, `textseg-train`, scripts/), defined once so that each command spells them alike."""

from __future__ import annotations

import argparse
from pathlib import Path

from textseg.engine import BACKENDS, PRECISIONS

BACKEND_CHOICES = BACKENDS  # what load_backend and the node's `backend` parameter take
PRECISION_CHOICES = PRECISIONS  # TensorRT engine precisions
# CamVid's val frames beside the checkout: the default frames of demo, bench, overload, fp16.
DEFAULT_IMAGES = Path("..") / "shared" / "datasets" / "camvid" / "val"


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' (width x height) -> (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 1280x720 (width x height), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width


def size_argument(text: str) -> tuple[int, int]:
    """parse_size as an argparse type whose error message names the problem (argparse shows
    a plain ValueError as 'invalid parse_size value')."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
