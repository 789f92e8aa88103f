"""Launch segmentation_node.

  ros2 launch textseg segmentation.launch.py image:=/camera/image_raw
  ros2 launch textseg segmentation.launch.py model:=/path/model.onnx namespace:=front

Arguments: model, backend, image (input topic), params_file, namespace, use_sim_time,
dds_profile (Fast DDS profile for large images; "" to keep the environment's).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from launch import LaunchDescription


def _node(context, *args, **kwargs):
    overrides = {"backend": LaunchConfiguration("backend").perform(context),
                 "use_sim_time": LaunchConfiguration("use_sim_time").perform(context) == "true"}
    model = LaunchConfiguration("model").perform(context)
    if model:
        overrides["model"] = model
    return [Node(
        package="textseg",
        executable="segmentation_node",
        name="segmentation_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image"))],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    share = get_package_share_directory("textseg")
    dds_profile = LaunchConfiguration("dds_profile")
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="",
                              description="textseg ONNX model ('' = the default artifact)"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto | onnxruntime"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "segmentation.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true when replaying a bag with --clock"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=os.path.join(share, "config", "fastdds_large_images.xml"),
            description="Fast DDS profile for large images; '' keeps the environment's"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", dds_profile,
                               condition=IfCondition(PythonExpression(
                                   ["'", dds_profile, "' != ''"]))),
        OpaqueFunction(function=_node),
    ])
