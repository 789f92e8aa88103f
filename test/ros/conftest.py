"""Fixtures of the tests that talk to real node processes: one local-only ROS environment per
module (its own domain id) and an rclpy context of the test process inside it."""

from __future__ import annotations

import pytest

from textseg.client.process import local_ros_environment
from textseg.ros_compat import DDS_PROFILE_VARIABLES


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    return local_ros_environment()


@pytest.fixture(scope="module")
def ros_context(ros_env):
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    with pytest.MonkeyPatch.context() as patch:
        for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", *DDS_PROFILE_VARIABLES):
            patch.setenv(key, ros_env[key])
        context = rclpy.Context()
        rclpy.init(context=context)
        yield context
        rclpy.shutdown(context=context)
