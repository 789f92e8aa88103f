"""segmentation_node's parameters declared on an rclpy node: every field of
`NodeParameters` as a read-only parameter whose descriptor carries its limits as a range, read
back into `NodeParameters` and validated."""

from __future__ import annotations

import math

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

from textseg.node.parameters import NodeParameters, ParameterSpec, parameter_specs

INT64_MAX = 2**63 - 1


def parameter_descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """Read-only (restart to change it), with the spec's limits as its range."""
    descriptor = ParameterDescriptor(description=spec.description, read_only=True,
                                     additional_constraints=spec.constraints)
    limits = spec.limits
    if limits is not None and spec.kind is int:
        descriptor.integer_range = [IntegerRange(
            from_value=limits.low, to_value=INT64_MAX if limits.high is None else limits.high)]
    elif limits is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(limits.low),
            to_value=math.inf if limits.high is None else float(limits.high))]
    return descriptor


def declare_node_parameters(node) -> NodeParameters:
    """Declare every parameter on `node`; the values as `NodeParameters`, validated."""
    params = NodeParameters(**{spec.name: _declare(node, spec) for spec in parameter_specs()})
    params.validate()
    return params


def _declare(node, spec: ParameterSpec):
    descriptor = parameter_descriptor(spec)
    try:
        if spec.kind is list:  # an empty default would be typed as a byte array
            value = node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY,
                                           descriptor).value
            return list(spec.default) if value is None else list(value)
        return node.declare_parameter(spec.name, spec.default, descriptor).value
    except (InvalidParameterTypeException, InvalidParameterValueException):
        # Refused for its type or range: declared as given, for validate() to say why.
        return node.declare_parameter(spec.name, spec.default, ParameterDescriptor(
            description=spec.description, read_only=True, dynamic_typing=True)).value
