"""ModelInfo <-> ONNX metadata_props: round trip and errors that name the problem."""

from __future__ import annotations

import json

import pytest

from textseg.engine.contract import (
    CONTRACT_VERSION,
    KEY_PREFIX,
    ContractError,
    ModelInfo,
)

NAMES = ("sky", "road", "car")
PALETTE = ((128, 128, 128), (128, 64, 128), (64, 0, 128))


def _info(**overrides) -> ModelInfo:
    values = dict(class_names=NAMES, palette=PALETTE, network_input_size=(96, 128),
                  architecture="stdc1-seg", dataset="camvid", text_encoder="none",
                  training_stage="random-init", eval_miou=0.5,
                  extra={"author": "tests"})
    values.update(overrides)
    return ModelInfo(**values)


def test_round_trip():
    info = _info()
    meta = info.to_metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    back = ModelInfo.from_metadata(meta)
    assert back == info
    assert back.extra == {"author": "tests"}
    assert back.num_classes == 3
    assert isinstance(back.class_names, tuple)
    assert isinstance(back.palette[0], tuple)
    assert isinstance(back.network_input_size, tuple)


def test_round_trip_defaults():
    info = ModelInfo(class_names=NAMES, palette=PALETTE, network_input_size=(10, 20))
    back = ModelInfo.from_metadata(info.to_metadata())
    assert back == info
    assert back.eval_miou is None


def test_metadata_keys():
    meta = _info().to_metadata()
    for name in ("class_names", "palette", "network_input_size", "architecture", "dataset",
                 "text_encoder", "training_stage", "eval_miou", "contract_version"):
        assert KEY_PREFIX + name in meta
    assert json.loads(meta[KEY_PREFIX + "contract_version"]) == CONTRACT_VERSION
    assert meta["author"] == "tests"


def test_optional_keys_may_be_missing():
    meta = _info().to_metadata()
    for name in ("architecture", "dataset", "text_encoder", "training_stage", "eval_miou"):
        del meta[KEY_PREFIX + name]
    info = ModelInfo.from_metadata(meta)
    assert info.architecture == "unknown"
    assert info.eval_miou is None


def _broken(key: str, value: str | None) -> dict[str, str]:
    meta = _info().to_metadata()
    if value is None:
        del meta[KEY_PREFIX + key]
    else:
        meta[KEY_PREFIX + key] = value
    return meta


@pytest.mark.parametrize("meta, needle", [
    ({}, "not a textseg model"),
    ({"producer": "someone"}, "not a textseg model"),
    (_broken("contract_version", None), "not a textseg model"),
    (_broken("class_names", None), "class_names"),
    (_broken("palette", None), "palette"),
    (_broken("network_input_size", None), "network_input_size"),
    (_broken("palette", json.dumps([[0, 0, 0]])), "palette has 1 colours for 3 classes"),
    (_broken("palette", json.dumps([[0, 0, 0], [1, 2, 3], [300, 0, 0]])), "0..255"),
    (_broken("class_names", "[sky, road"), "not valid JSON"),
    (_broken("eval_miou", "{"), "eval_miou"),
    (_broken("contract_version", json.dumps(CONTRACT_VERSION + 1)), "contract version"),
    (_broken("class_names", json.dumps([])), "class_names is empty"),
    (_broken("network_input_size", json.dumps([0, 128])), "network_input_size"),
    (_broken("network_input_size", json.dumps(5)), "malformed metadata"),
    (_broken("palette", json.dumps(["red", "green", "blue"])),
     "palette must be a JSON list of [r, g, b]"),
    (_broken("class_names", json.dumps("abc")), "class_names must be a JSON list of strings"),
])
def test_from_metadata_errors(meta, needle):
    with pytest.raises(ContractError) as info:
        ModelInfo.from_metadata(meta, source="thing.onnx")
    message = str(info.value)
    assert needle in message
    assert "thing.onnx" in message


def test_contract_error_is_value_error():
    assert issubclass(ContractError, ValueError)


def test_constructor_validates():
    with pytest.raises(ContractError, match="palette has 2 colours for 3 classes"):
        _info(palette=PALETTE[:2])
    with pytest.raises(ContractError, match="do not fit"):
        ModelInfo(class_names=tuple(map(str, range(256))), palette=((0, 0, 0),) * 256,
                  network_input_size=(8, 8))


def test_one_interface_check_for_graphs_and_engines():
    """Dynamic axes read as names or "?" in an ONNX graph and as -1 in a TensorRT engine."""
    from textseg.engine.contract import TensorSpec, check_interface, interface_problems

    for dynamic in ("batch", "?", -1):
        inputs = [TensorSpec("image", "uint8", (dynamic, dynamic, dynamic, 3))]
        outputs = [TensorSpec("labels", "uint8", (dynamic, dynamic, dynamic))]
        interface = check_interface(inputs, outputs, "m.onnx")
        assert interface.dynamic_batch and not interface.has_confidence
    fixed = check_interface([TensorSpec("image", "uint8", (1, 4, 5, 3))],
                            [TensorSpec("labels", "uint8", (1, 4, 5)),
                             TensorSpec("confidence", "uint8", (1, 4, 5))], "m.onnx")
    assert fixed.has_confidence and not fixed.dynamic_batch
    problems = interface_problems([TensorSpec("image", "float32", (1, -1, -1, 3)),
                                   TensorSpec("extra", "uint8", (1,))],
                                  [TensorSpec("confidence", "float32", (1, -1, -1))])
    assert problems == [
        "expected one input 'image', found [('image', 'float32'), ('extra', 'uint8')]",
        "expected a uint8 [N, H, W] output 'labels', there is no output 'labels'",
        "output 'confidence' must be uint8 [N, H, W], is float32 [1, -1, -1]"]
    with pytest.raises(ContractError, match="^m.onnx: input 'image' must be"):
        check_interface([TensorSpec("image", "uint8", (2, -1, -1, 3))],
                        [TensorSpec("labels", "uint8", (2, -1, -1))], "m.onnx")
