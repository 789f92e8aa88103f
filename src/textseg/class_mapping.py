"""Classes as configuration: rename, merge, select and recolour a model's classes for the
outputs, without retraining or re-exporting (node parameters class_groups, class_others,
class_colors).

    class_groups: ["drivable: road, sidewalk", "vehicle: car, bicyclist"]
    class_others: obstacle      # keep (default) | drop | a name: the classes no group names
    class_colors: ["drivable: 128, 64, 128", "obstacle: 255, 0, 0"]

Output ids follow the groups in order, then the other classes (kept one by one in the model's
order, or merged into the one class named by class_others). A group of one class renames it.
Dropped classes become UNLABELLED (255) with confidence 0. A merged class's confidence is the
model's probability of its most likely member: a lower bound of the group's probability (the
file carries only the top class's probability, not the others').
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from textseg.engine.contract import UNLABELLED, ModelInfo

KEEP, DROP = "keep", "drop"


class ClassMappingError(ValueError):
    """A class_groups / class_others / class_colors value the model's classes cannot take."""


@dataclass(frozen=True)
class ClassMapping:
    class_names: tuple[str, ...]  # the outputs' classes, in output id order
    palette: tuple[tuple[int, int, int], ...]
    label_lut: np.ndarray  # uint8 [256]: model id -> output id (UNLABELLED: dropped)
    dropped: tuple[str, ...]  # model classes with no output class
    model_classes: int  # how many classes the model has

    @property
    def identity(self) -> bool:
        """Every model class keeps its id (names and colours may still differ)."""
        n = self.model_classes
        return (not self.dropped and len(self.class_names) == n
                and bool((self.label_lut[:n] == np.arange(n)).all()))

    def apply(self, labels: np.ndarray, confidence: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """Model labels (and confidence) -> the outputs' (new arrays; the inputs are kept)."""
        mapped = self.label_lut[labels]
        if confidence is not None and self.dropped:
            confidence = np.where(mapped == UNLABELLED, np.uint8(0), confidence)
        return mapped, confidence

    def output_info(self, info: ModelInfo) -> ModelInfo:
        """`info` with the outputs' class names and palette (LabelInfo, the class_names and
        palette parameters and the colour image all read it)."""
        return replace(info, class_names=self.class_names, palette=self.palette)

    def describe(self, model_names: tuple[str, ...]) -> str:
        members: dict[int, list[str]] = {}
        for model_id, name in enumerate(model_names):
            members.setdefault(int(self.label_lut[model_id]), []).append(name)
        parts = [f"{new} <- {', '.join(members.get(i, []))}"
                 for i, new in enumerate(self.class_names)]
        if self.dropped:
            parts.append(f"dropped: {', '.join(self.dropped)}")
        return "; ".join(parts)


def _split_entry(entry: str, what: str) -> tuple[str, str]:
    name, colon, rest = entry.partition(":")
    if not colon or not name.strip() or not rest.strip():
        raise ClassMappingError(f"{what} entry {entry!r}: expected 'NAME: ...'")
    return name.strip(), rest.strip()


def _colour(text: str, entry: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ClassMappingError(f"class_colors entry {entry!r}: expected 'NAME: r, g, b' with "
                                "values 0..255")
    return values  # type: ignore[return-value]


def build_class_mapping(model_names: tuple[str, ...],
                        model_palette: tuple[tuple[int, int, int], ...],
                        groups: list[str] | tuple[str, ...] = (), others: str = KEEP,
                        colors: list[str] | tuple[str, ...] = ()) -> ClassMapping:
    """The mapping the three parameters describe for a model with `model_names`; every
    problem in one ClassMappingError naming the entry and the model's classes."""
    problems: list[str] = []
    index = {name: i for i, name in enumerate(model_names)}
    names: list[str] = []
    palette: list[tuple[int, int, int]] = []
    lut = np.full(256, UNLABELLED, np.uint8)
    assigned: dict[str, str] = {}
    for entry in groups:
        try:
            new, rest = _split_entry(entry, "class_groups")
        except ClassMappingError as exc:
            problems.append(str(exc))
            continue
        members = [m.strip() for m in rest.split(",") if m.strip()]
        unknown = [m for m in members if m not in index]
        if unknown:
            problems.append(f"class_groups {new!r}: {unknown} not among the model's classes "
                            f"{list(model_names)}")
        twice = [m for m in members if m in assigned]
        if twice:
            problems.append(f"class_groups {new!r}: {twice} already in "
                            f"{sorted({assigned[m] for m in twice})}")
        if new in names:
            problems.append(f"class_groups names {new!r} twice")
        known = [m for m in members if m in index and m not in assigned]
        for member in known:
            assigned[member] = new
            lut[index[member]] = len(names)
        names.append(new)
        palette.append(model_palette[index[known[0]]] if known else (0, 0, 0))
    rest = [name for name in model_names if name not in assigned]
    dropped: tuple[str, ...] = ()
    others = (others or KEEP).strip()
    if others == KEEP:
        for name in rest:
            if name in names:
                problems.append(f"class {name!r} is kept under its own name, which a group "
                                "already uses: rename the group or name the class in a group")
            lut[index[name]] = len(names)
            names.append(name)
            palette.append(model_palette[index[name]])
    elif others == DROP:
        dropped = tuple(rest)
    elif rest:
        if others in names:
            problems.append(f"class_others {others!r} is also a group's name")
        for name in rest:
            lut[index[name]] = len(names)
        names.append(others)
        palette.append(model_palette[index[rest[0]]])
    if not names:
        problems.append("the mapping leaves no class at all")
    if len(names) > UNLABELLED:
        problems.append(f"{len(names)} output classes do not fit a uint8 label image")
    for entry in colors:
        try:
            name, text = _split_entry(entry, "class_colors")
            colour = _colour(text, entry)
        except ClassMappingError as exc:
            problems.append(str(exc))
            continue
        if name not in names:
            problems.append(f"class_colors {name!r} is not an output class ({names})")
            continue
        palette[names.index(name)] = colour
    if problems:
        raise ClassMappingError("class mapping: " + "; ".join(problems))
    return ClassMapping(tuple(names), tuple(palette), lut, dropped, len(model_names))
