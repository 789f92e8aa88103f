"""segmentation_node's parameters without ROS: the dataclass's checks word every bad value the
way the node's one FATAL line does (test/ros/test_segmentation_node.py keeps two cases that
prove the node process itself refuses with these words), the limits a ROS range carries, and
what the parameters ask of the backend."""

from __future__ import annotations

from dataclasses import fields

import pytest

from textseg.engine import BackendOptions
from textseg.engine.engine_cache import MAX_BATCH
from textseg.node.parameters import (
    Limits,
    NodeParameters,
    ParameterError,
    check_model,
    parameter_specs,
)


# Each of these once started a node process (test/ros/test_segmentation_node.py,
# test_multi_camera.py, test_points_node.py); the asserted texts are unchanged.
@pytest.mark.parametrize("parameters, message", [
    ({"self_check": "maybe"}, "self_check 'maybe' is not one of"),
    ({"qos_reliability": "sometimes"}, "qos_reliability 'sometimes' is not one of"),
    ({"qos_depth": 0}, "qos_depth must be >= 1"),
    ({"qos_depth": "deep"}, "qos_depth must be an integer"),
    ({"backend": "magic"}, "backend 'magic' is not one of"),
    ({"transport": "pigeon"}, "transport 'pigeon' is not one of"),
    ({"output_scale": 0.0}, "output_scale must be in (0, 1]"),
    ({"overlay_alpha": 1}, "overlay_alpha must be a double"),
    ({"precision": "int8", "backend": "auto"}, "precision int8 needs calibration_dir"),
    ({"image_width": 640}, "image_width and image_height must be given together"),
    ({"parallel_inferences": 0}, "parallel_inferences must be in 1..8"),
    ({"cameras": ["front", "front"]}, "names a camera twice"),
    ({"cameras": ["front/left"]}, "letters, digits and _"),
    ({"points": "ground"}, "needs ground_height"),
    ({"points": "lidar"}, "points 'lidar' is not one of"),
])
def test_a_bad_parameter_is_refused_with_the_reason(parameters, message):
    with pytest.raises(ParameterError) as caught:
        NodeParameters(**parameters).validate()
    assert message in str(caught.value)
    assert str(caught.value).startswith("invalid parameters: ")


def test_the_defaults_and_the_documented_config_are_valid():
    NodeParameters().validate()
    NodeParameters(cameras=["front", "left"], max_batch=2, points="ground", ground_height=1.2,
                   image_width=640, image_height=480, output_scale=0.5).validate()


def test_every_problem_is_named_in_one_message():
    with pytest.raises(ParameterError) as caught:
        NodeParameters(qos_depth=0, backend="magic", diagnostics_period=-1.0,
                       max_batch=MAX_BATCH + 1, depth_tolerance=-0.5).validate()
    message = str(caught.value)
    for phrase in ("qos_depth must be >= 1, got 0", "backend 'magic' is not one of",
                   "diagnostics_period must be > 0, got -1.0",
                   f"max_batch must be in 0..{MAX_BATCH}, got {MAX_BATCH + 1}",
                   "depth_tolerance must be >= 0, got -0.5"):
        assert phrase in message, message
    assert message.count(";") == 4


def test_a_value_of_the_wrong_type_counts_as_its_default_in_the_joint_checks():
    """image_width 'wide' is one problem (its type), not also an unpaired image_height."""
    problems = NodeParameters(image_width="wide").problems()
    assert problems == ["image_width must be an integer"]
    assert NodeParameters(publish_color=1).problems() == ["publish_color must be a boolean"]
    assert NodeParameters(threads=True).problems() == ["threads must be an integer"]
    assert NodeParameters(cameras=["a", 2]).problems() == ["cameras must be a list of strings"]


def test_open_ends_are_refused_at_the_bound_itself():
    assert NodeParameters(output_scale=1.0).problems() == []
    assert NodeParameters(overlay_alpha=0.0).problems() == []
    assert NodeParameters(diagnostics_period=0.0).problems() == [
        "diagnostics_period must be > 0, got 0.0"]
    assert NodeParameters(ground_max_range=0.0).problems() == [
        "ground_max_range must be > 0, got 0.0"]


def test_a_calibration_folder_must_exist(tmp_path):
    assert NodeParameters(precision="int8", calibration_dir=str(tmp_path)).problems() == []
    absent = tmp_path / "absent"
    assert NodeParameters(calibration_dir=str(absent)).problems() == [
        f"calibration_dir {absent} is not a folder"]
    # int8 needs no calibration on ONNX Runtime, nor for a baked engine
    assert NodeParameters(precision="int8", backend="onnxruntime").problems() == []
    assert NodeParameters(precision="int8", model="baked.engine").problems() == []


def test_limits_describe_themselves_as_the_messages_do():
    assert Limits(1).describe() == ">= 1"
    assert Limits(0.0, low_open=True).describe() == "> 0"
    assert Limits(1, 8).describe() == "1..8"
    assert Limits(0.0, 1.0, low_open=True).describe() == "(0, 1]"
    assert Limits(0.0, 1.0).describe() == "[0, 1]"
    assert Limits(0.0, 1.0, low_open=True).admits(1.0)
    assert not Limits(0.0, 1.0, low_open=True).admits(0.0)
    assert not Limits(1, 8).admits(9)


def test_specs_follow_the_dataclass_and_carry_no_benchmark_figures():
    specs = parameter_specs()
    assert [spec.name for spec in specs] == [f.name for f in fields(NodeParameters)]
    by_name = {spec.name: spec for spec in specs}
    assert by_name["qos_depth"].limits == Limits(1) and by_name["qos_depth"].kind is int
    assert by_name["overlay_alpha"].kind is float and by_name["cameras"].kind is list
    assert by_name["backend"].constraints == "auto | tensorrt | onnxruntime"
    # What a closed ROS range cannot say is left in words; a closed range needs none.
    assert by_name["output_scale"].constraints == "(0, 1]"
    assert by_name["qos_depth"].constraints == ""
    for spec in specs:  # measured numbers live in docs/node.md
        assert "FPS" not in spec.description and "frames/s" not in spec.description, spec.name


def test_frames_per_inference_follow_max_batch_the_cameras_and_the_backend():
    three = ["front", "left", "rear"]
    assert NodeParameters().frames_per_inference(batching_pays=True) == 1
    assert NodeParameters(cameras=three).frames_per_inference(batching_pays=True) == 3
    assert NodeParameters(cameras=three).frames_per_inference(batching_pays=False) == 1
    assert NodeParameters(cameras=three, max_batch=2).frames_per_inference(False) == 2
    assert NodeParameters(cameras=three, max_batch=8).frames_per_inference(False) == 3


def test_backend_options_carry_the_parameters():
    params = NodeParameters(cameras=["a", "b"], precision="fp32", engine_build="never",
                            image_width=640, image_height=480, output_scale=0.5,
                            spin_wait=True, self_check="warn")
    options = params.backend_options("tensorrt", 2, print, None)
    assert options == BackendOptions(
        backend="tensorrt", threads=2, spin_wait=True, precision="fp32", cache_dir="",
        allow_build=False, calibration_dir="", input_size=(240, 320), max_batch=2,
        cancel=None, self_check="warn", report=print)
    assert NodeParameters().backend_options("onnxruntime", 0, print, None).input_size is None


def test_check_model_names_what_the_model_cannot_serve(tmp_path):
    absent = tmp_path / "absent.onnx"
    with pytest.raises(FileNotFoundError, match="model file not found"):
        check_model(absent, NodeParameters(model=str(absent)))
    engine = tmp_path / "baked.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ParameterError, match="is a TensorRT engine: use backend tensorrt"):
        check_model(engine, NodeParameters(model=str(engine), backend="onnxruntime"))


def test_check_model_returns_the_classes(tiny_model_path):
    info = check_model(tiny_model_path, NodeParameters(publish_confidence=True))
    assert info.num_classes == 11
