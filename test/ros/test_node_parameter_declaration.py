"""How segmentation_node declares its parameters, in this process (no model, no DDS traffic):
read-only descriptors whose ranges are the limits textseg.node.parameters declares, and values
ROS refuses for their range or type handed on as given, so the node's checks word the refusal
(the node process does the same: test_segmentation_node.py's bad start-up cases)."""

from __future__ import annotations

import math

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from textseg.engine.engine_cache import MAX_BATCH  # noqa: E402
from textseg.node.parameters import NodeParameters, ParameterError  # noqa: E402
from textseg.node.ros_parameters import INT64_MAX  # noqa: E402
from textseg.node.segmentation_node import SegmentationBehaviour  # noqa: E402

pytestmark = pytest.mark.ros


class DeclaringNode(SegmentationBehaviour, Node):
    """The node's parameter declaration alone, on a plain rclpy node."""


def _node(ros_context, overrides: dict) -> DeclaringNode:
    return DeclaringNode("declaring", context=ros_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])


def test_descriptors_carry_the_declared_limits_as_ranges(ros_context):
    node = _node(ros_context, {"cameras": ["front", "left"], "output_scale": 0.5})
    try:
        params = node._declare_parameters()
        assert params == NodeParameters(cameras=["front", "left"], output_scale=0.5)
        depth, parallel, scale, period, backend = node.describe_parameters(
            ["qos_depth", "parallel_inferences", "output_scale", "diagnostics_period",
             "backend"])
        assert all(d.read_only for d in (depth, parallel, scale, period, backend))
        assert [(r.from_value, r.to_value) for r in depth.integer_range] == [(1, INT64_MAX)]
        assert [(r.from_value, r.to_value) for r in parallel.integer_range] == [(1, 8)]
        assert not depth.additional_constraints  # the range says it all
        assert [(r.from_value, r.to_value) for r in scale.floating_point_range] == [(0.0, 1.0)]
        assert scale.additional_constraints == "(0, 1]"  # the open end a range cannot say
        assert period.floating_point_range[0].to_value == math.inf
        assert backend.additional_constraints == "auto | tensorrt | onnxruntime"
        (batch,) = node.describe_parameters(["max_batch"])
        assert batch.integer_range[0].to_value == MAX_BATCH
    finally:
        node.destroy_node()


def test_values_ros_refuses_are_worded_by_the_checks(ros_context):
    node = _node(ros_context, {"qos_depth": 0, "overlay_alpha": 1, "parallel_inferences": 9,
                               "diagnostics_period": -1.0, "cameras": [1, 2]})
    try:
        with pytest.raises(ParameterError) as caught:
            node._declare_parameters()
    finally:
        node.destroy_node()
    message = str(caught.value)
    for phrase in ("qos_depth must be >= 1, got 0", "overlay_alpha must be a double",
                   "parallel_inferences must be in 1..8, got 9",
                   "diagnostics_period must be > 0, got -1.0",
                   "cameras must be a list of strings"):
        assert phrase in message, message
