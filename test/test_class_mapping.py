"""Classes as configuration (textseg.class_mapping): rename, merge, select, recolour."""

from __future__ import annotations

import numpy as np
import pytest

from textseg.class_mapping import ClassMappingError, build_class_mapping
from textseg.engine.contract import UNLABELLED, ModelInfo

NAMES = ("sky", "building", "pole", "road", "sidewalk", "tree", "traffic sign", "fence", "car",
         "pedestrian", "bicyclist")
PALETTE = tuple((10 * i, 20 * i, 5 * i) for i in range(len(NAMES)))
ROAD, SIDEWALK, CAR, SKY = 3, 4, 8, 0


def test_no_parameters_keep_the_models_classes():
    mapping = build_class_mapping(NAMES, PALETTE)
    assert mapping.identity and mapping.class_names == NAMES and mapping.palette == PALETTE
    labels = np.arange(11, dtype=np.uint8).reshape(1, 11)
    assert (mapping.apply(labels, None)[0] == labels).all()


def test_groups_merge_and_the_rest_becomes_one_class():
    mapping = build_class_mapping(NAMES, PALETTE, ["drivable: road, sidewalk"], "obstacle",
                                  ["obstacle: 255, 0, 0"])
    assert mapping.class_names == ("drivable", "obstacle") and not mapping.identity
    assert mapping.palette == (PALETTE[ROAD], (255, 0, 0))  # a group: its first member's
    labels = np.array([[ROAD, SIDEWALK, CAR, SKY]], np.uint8)
    confidence = np.array([[200, 100, 50, 250]], np.uint8)
    mapped, kept = mapping.apply(labels, confidence)
    assert mapped.tolist() == [[0, 0, 1, 1]]
    assert kept.tolist() == confidence.tolist()  # nothing dropped: the model's probability
    info = mapping.output_info(ModelInfo(NAMES, PALETTE, (96, 128)))
    assert info.class_names == ("drivable", "obstacle") and info.num_classes == 2
    assert "drivable <- road, sidewalk; obstacle <- sky, building" in mapping.describe(NAMES)


def test_select_drops_the_rest_renames_and_keeps_order():
    mapping = build_class_mapping(NAMES, PALETTE, ["vehicle: car", "person: pedestrian"], "drop")
    assert mapping.class_names == ("vehicle", "person")
    assert mapping.dropped == tuple(n for n in NAMES if n not in ("car", "pedestrian"))
    labels = np.array([[CAR, 9, ROAD]], np.uint8)
    mapped, confidence = mapping.apply(labels, np.array([[90, 80, 70]], np.uint8))
    assert mapped.tolist() == [[0, 1, UNLABELLED]]
    assert confidence.tolist() == [[90, 80, 0]]  # no class there: no confidence either


def test_merging_only_the_last_classes_is_not_mistaken_for_no_mapping():
    mapping = build_class_mapping(("a", "b", "c", "d"), PALETTE[:4], ["x: a", "y: b"], "z")
    assert mapping.label_lut[:4].tolist() == [0, 1, 2, 2] and not mapping.identity
    assert not build_class_mapping(("a", "b"), PALETTE[:2], [], "z").identity
    renamed = build_class_mapping(("a", "b"), PALETTE[:2], ["x: a"])
    assert renamed.identity and renamed.class_names == ("x", "b")  # ids kept, a name changed


def test_keep_puts_the_other_classes_after_the_groups_in_model_order():
    mapping = build_class_mapping(NAMES, PALETTE, ["drivable: road"])
    assert mapping.class_names[:3] == ("drivable", "sky", "building")
    assert len(mapping.class_names) == 11
    assert int(mapping.label_lut[ROAD]) == 0 and int(mapping.label_lut[SKY]) == 1


@pytest.mark.parametrize(("groups", "others", "colors", "message"), [
    (["drivable: road, lawn"], "keep", [], r"\['lawn'\] not among the model's classes"),
    (["a: road", "b: road"], "keep", [], r"\['road'\] already in \['a'\]"),
    (["a: road", "a: car"], "keep", [], "names 'a' twice"),
    (["road"], "keep", [], "expected 'NAME: ...'"),
    (["sky: road"], "keep", [], "kept under its own name"),
    (["a: road"], "a", [], "also a group's name"),
    ([], "drop", [], "leaves no class"),
    (["a: road"], "keep", ["a: 1, 2"], "expected 'NAME: r, g, b'"),
    (["a: road"], "keep", ["b: 1, 2, 3"], "'b' is not an output class"),
    (["a: road"], "keep", ["a: 1, 2, 300"], "values 0..255"),
])
def test_bad_mappings_are_refused_naming_the_entry(groups, others, colors, message):
    with pytest.raises(ClassMappingError, match=message):
        build_class_mapping(NAMES, PALETTE, groups, others, colors)
