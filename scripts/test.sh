#!/usr/bin/env bash
# The whole test suite: set up, lint, then pytest. DDS traffic stays on this machine.
# ROS 2 Jazzy (the default) from .venv/; `ROS_DISTRO=kilted ./scripts/test.sh` runs it on Kilted
# from .venv-kilted/ (scripts/ros_distro.sh). Arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=ros_distro.sh
source "$root/scripts/ros_distro.sh"
"$root/scripts/setup.sh"
cd "$root"
# shellcheck source=local_ros_env.sh
source "$root/scripts/local_ros_env.sh"
# vision_msgs has no wheel: build its LabelInfo with the ROS wheels' own rosidl toolchain, so
# LabelInfo is tested over real DDS (about 40 s once; reused while nothing changed).
echo "test: vision_msgs for $ros_distro (scripts/build_vision_msgs.sh)"
prefix=$("$root/scripts/build_vision_msgs.sh" | tail -n 1)
site=$(echo "$prefix"/lib/python3*/site-packages)
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TEXTSEG_VISION_MSGS="$prefix"  # the tests that need vision_msgs then fail, not skip
echo "test: ruff"
"$ros_venv/bin/ruff" check src training test launch
echo "test: pytest on ROS 2 $ros_distro (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
"$ros_venv/bin/python" -m pytest "$@"
