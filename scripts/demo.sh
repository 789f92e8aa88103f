#!/usr/bin/env bash
# The main job: set up, then run segmentation_node on real CamVid frames and show what it published.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=ros_distro.sh
source "$root/scripts/ros_distro.sh"  # ROS_DISTRO=kilted: the Kilted venv
"$root/scripts/setup.sh"
cd "$root"
exec "$ros_venv/bin/textseg" demo "$@"
