#!/usr/bin/env bash
# The whole test suite: set up, lint, then pytest. DDS traffic stays on this machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
ROS_LOG_DIR="$(mktemp -d)"
export ROS_LOG_DIR
trap 'rm -rf "$ROS_LOG_DIR"' EXIT
echo "test: ruff"
"$root/.venv/bin/ruff" check src training test launch
echo "test: pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
"$root/.venv/bin/python" -m pytest "$@"
