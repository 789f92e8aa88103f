#!/usr/bin/env bash
# The test suite as a ROS workspace runs it (`colcon test`): the vehicle runtime only
# (requirements/runtime.txt and the ROS wheels of requirements/<distro>/ros.txt: numpy, OpenCV,
# ONNX Runtime; no torch, no onnx, no textseg_training) plus the test tools. Every test must
# pass or skip with its reason; a test module that imports the training package unguarded
# fails collection here. CI runs it after ./scripts/test.sh (.ci/run). Its own venv:
# .venv-runtime/ (ROS 2 Jazzy, the default; ROS_DISTRO=kilted: .venv-runtime-kilted/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=ros_distro.sh
source "$root/scripts/ros_distro.sh"
venv="$root/.venv-runtime"
[ "$ros_distro" = "$ros_default_distro" ] || venv="$root/.venv-runtime-$ros_distro"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  echo "runtime-only: creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
tools=$(grep -E '^(pytest|hypothesis|mcap)==' requirements/dev.txt)
deps_hash=$(cat requirements/runtime.txt "$ros_requirements/ros.txt" setup.py setup.cfg \
  <(echo "$tools") | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.textseg-deps" 2>/dev/null)" != "$deps_hash" ]; then
  echo "runtime-only: installing the runtime (ROS 2 $ros_distro) and the test tools" \
    "(log: $venv/setup.log)"
  # shellcheck disable=SC2086 # one requirement per word
  if ! ros_clear_other_wheels "$venv" >> "$venv/setup.log" \
      || ! "$py" -m pip install --disable-pip-version-check -r requirements/runtime.txt \
      -r "$ros_requirements/ros.txt" $tools >> "$venv/setup.log" 2>&1 \
      || ! "$py" -m pip install --disable-pip-version-check \
      --no-deps -e . >> "$venv/setup.log" 2>&1; then
    tail -n 30 "$venv/setup.log" >&2
    echo "runtime-only: pip install failed (full log: $venv/setup.log)" >&2
    exit 1
  fi
  ros_mark_wheels "$venv"
  echo "$deps_hash" > "$venv/.textseg-deps"
fi
if "$py" -c 'import torch' 2> /dev/null || "$py" -c 'import textseg_training' 2> /dev/null; then
  echo "runtime-only: $venv has torch or textseg_training: not a runtime-only environment" >&2
  exit 1
fi
# shellcheck source=local_ros_env.sh
source "$root/scripts/local_ros_env.sh"
echo "runtime-only: pytest on ROS 2 $ros_distro (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
"$py" -m pytest -p no:cacheprovider "$@"
