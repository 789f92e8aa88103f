"""Launch segmentation_node.

  ros2 launch textseg segmentation.launch.py image:=/camera/image_raw
  ros2 launch textseg segmentation.launch.py model:=/path/model.onnx namespace:=front
  ros2 launch textseg segmentation.launch.py backend:=tensorrt precision:=fp16 \
      image:=/camera/image_raw transport:=compressed

Arguments: model, backend, precision, image (input topic; with transport compressed the node
reads `<image>/compressed`, and camera_info is taken beside it: /cam/image_raw ->
/cam/camera_info), transport (raw | compressed), params_file, namespace,
use_sim_time, dds_profile (Fast DDS profile for large images; `none` keeps the environment's:
`ros2 launch` refuses an empty value on the command line), lifecycle (true: the managed
segmentation_lifecycle_node, same name and topics, started unconfigured for a lifecycle
manager such as Nav2's to configure and activate).

Parameters come from `params_file`; `model`, `backend`, `precision` and `transport` override
it only when given (non-empty), so a custom params file's values are not replaced by the
launch defaults.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription
from textseg.ros_compat import dds_profile_environment

# dds_profile values that keep the environment's FASTDDS_DEFAULT_PROFILES_FILE ('' and "''"
# only reach here from other launch files: a shell passes no empty value to `ros2 launch`).
KEEP_ENVIRONMENT_PROFILE = ("none", "", "''", '""')


def _node(context, *args, **kwargs):
    overrides = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"),
                                                value_type=bool)}
    for name in ("model", "backend", "precision", "transport"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    # Set for this node only, not for the rest of an including launch file; a plain Python
    # test instead of a PythonExpression, which breaks on paths containing quotes.
    dds_profile = LaunchConfiguration("dds_profile").perform(context).strip()
    keep = dds_profile.lower() in KEEP_ENVIRONMENT_PROFILE
    additional_env = None if keep else dds_profile_environment(dds_profile)  # every distro's
    image = LaunchConfiguration("image").perform(context)
    # camera_info is the image's sibling (image_transport's convention): /cam/image_raw ->
    # /cam/camera_info.
    camera_info = image.rsplit("/", 1)[0] + "/camera_info" if "/" in image else "camera_info"
    lifecycle = LaunchConfiguration("lifecycle").perform(context).strip().lower()
    if lifecycle not in ("true", "false"):
        raise ValueError(f"lifecycle:={lifecycle!r}: use true or false")
    return [Node(
        package="textseg",
        # The same node name either way, so a lifecycle manager's node_names match it.
        executable="segmentation_lifecycle_node" if lifecycle == "true" else "segmentation_node",
        name="segmentation_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", image), ("image/compressed", f"{image}/compressed"),
                    ("camera_info", camera_info)],
        additional_env=additional_env,
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    share = get_package_share_directory("textseg")
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="",
                              description="textseg ONNX model ('' = params_file's, whose "
                                          "'' is the default artifact)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | tensorrt | onnxruntime "
                                          "('' = params_file's)"),
        DeclareLaunchArgument("precision", default_value="",
                              description="TensorRT engine precision: fp16 | fp32 | int8 "
                                          "('' = params_file's)"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input image topic (sensor_msgs/Image); the "
                                          "compressed transport reads <image>/compressed"),
        DeclareLaunchArgument("transport", default_value="",
                              description="raw | compressed ('' = params_file's)"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "segmentation.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true when replaying a bag with --clock"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: the lifecycle node (configure = load the "
                                          "model, activate = subscribe), for a lifecycle "
                                          "manager"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=os.path.join(share, "config", "fastdds_large_images.xml"),
            description="Fast DDS profile for large images; 'none' keeps the environment's"),
        OpaqueFunction(function=_node),
    ])
