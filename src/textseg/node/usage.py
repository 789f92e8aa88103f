"""`segmentation_node --help` (and the lifecycle twin's): a short usage, printed without
starting rclpy (ROS-free)."""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = """\
usage: {program} [--help] [--ros-args -p NAME:=VALUE ... | --ros-args --params-file FILE]

{what}: semantic segmentation of sensor_msgs/Image (or image/compressed) frames into
labels/image (class ids), and optionally labels/color, labels/overlay, labels/confidence,
labels/camera_info, labels/points and label_info.

  {program} --ros-args -p model:=model.onnx -r image:=/camera/image_raw
  {program} --ros-args --params-file config/segmentation.yaml
  ros2 launch textseg segmentation.launch.py      (from a ROS 2 install)

Parameters, topics and diagnostics: docs/node.md; every parameter with its default:
config/segmentation.yaml. Run it from the venv of the ROS 2 distro its peers use
(.venv: Jazzy, .venv-kilted: Kilted)."""

WHAT = {"segmentation_node": "The textseg ROS 2 node",
        "segmentation_lifecycle_node": "The textseg ROS 2 node, managed (lifecycle)"}


def help_requested(args: list[str] | None) -> bool:
    """Print the usage and return True when `args` (sys.argv[1:] when None) ask for help
    before any --ros-args."""
    program = Path(sys.argv[0]).stem or "segmentation_node"
    args = sys.argv[1:] if args is None else list(args)
    own = args[:args.index("--ros-args")] if "--ros-args" in args else args
    if not {"-h", "--help"} & set(own):
        return False
    print(USAGE.format(program=program, what=WHAT.get(program, WHAT["segmentation_node"])))
    return True
