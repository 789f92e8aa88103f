#!/usr/bin/env bash
# Benchmarks (numbers in README "Measured on this machine"): the backend alone vs the node over
# DDS at 960x720 and 1280x720, then 30 s of overload at 3x capacity at 1280x720.
#   ./scripts/bench.sh [MODEL] [--backend auto|tensorrt|onnxruntime] [--precision fp16|fp32|int8]
# DDS traffic stays on this machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=ros_distro.sh
source "$root/scripts/ros_distro.sh"  # ROS_DISTRO=kilted: the Kilted venv
"$root/scripts/setup.sh"
cd "$root"
# shellcheck source=local_ros_env.sh
source "$root/scripts/local_ros_env.sh"
echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews the figures)"
"$ros_venv/bin/textseg" bench "$@"
echo
"$ros_venv/bin/textseg" overload "$@"
