#!/usr/bin/env bash
# The whole test suite: set up, lint, then pytest. DDS traffic stays on this machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
# shellcheck source=local_ros_env.sh
source "$root/scripts/local_ros_env.sh"
echo "test: ruff"
"$root/.venv/bin/ruff" check src training test launch
echo "test: pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
"$root/.venv/bin/python" -m pytest "$@"
