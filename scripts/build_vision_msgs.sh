#!/usr/bin/env bash
# Build vision_msgs' LabelInfo and VisionClass from scripts/vision_msgs/ with the ROS 2 wheels'
# own ament_cmake and rosidl toolchain (requirements/<distro>/vision_msgs_build.txt), where no
# ROS install and no vision_msgs wheel exist; the tests use it to check LabelInfo over real DDS.
# ROS_DISTRO picks the distro as for scripts/setup.sh (jazzy by default; kilted): each is built
# with its own toolchain, into its own folder. About 40 s on a fresh machine; a second call
# with nothing changed returns at once.
#   scripts/build_vision_msgs.sh [WORK]     (default WORK: .cache/vision_msgs-<distro>)
# Prints the install prefix on its last line. To use it from the project's venv:
#   export PYTHONPATH=PREFIX/lib/python3.11/site-packages LD_LIBRARY_PATH=PREFIX/lib
# (before Python starts: the typesupport libraries are found through LD_LIBRARY_PATH).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=ros_distro.sh
source "$root/scripts/ros_distro.sh"
requirements="$ros_requirements/vision_msgs_build.txt"
work_arg="${1:-$root/.cache/vision_msgs-$ros_distro}"
work="$(mkdir -p "$work_arg" && cd "$work_arg" && pwd)"
prefix="$work/install"
stamp=$(cat "$root/scripts/build_vision_msgs.sh" "$requirements" \
  "$root"/scripts/vision_msgs/* | sha256sum | cut -c1-16)
if [ "$(cat "$prefix/.textseg-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$prefix"
  exit 0
fi
# The same CPython as the project's venv: a Python extension module is compiled.
python=$(_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$ros_venv/bin/python" -c \
  'import sys; print(sys._base_executable)')
venv="$work/venv"
log="$work/build.log"
: > "$log"
fail() { tail -n 40 "$log" >&2; echo "build_vision_msgs: $1 failed (log: $log)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >> "$log" 2>&1 || fail "venv"
"$venv/bin/python" -m pip install --disable-pip-version-check \
  -r "$requirements" >> "$log" 2>&1 || fail "pip install"
rm -rf "$work/src" "$work/build" "$prefix"
mkdir -p "$work/src/msg"
cp "$root/scripts/vision_msgs/package.xml" "$root/scripts/vision_msgs/CMakeLists.txt" \
  "$work/src/"
cp "$root"/scripts/vision_msgs/*.msg "$work/src/msg/"
# The wheels install their ROS prefix (share/, lib/, include/) into the venv's root.
export CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$venv/bin/python3" >> "$log" 2>&1 || fail "cmake configure"
cmake --build "$work/build" -j "${TEXTSEG_BUILD_JOBS:-2}" >> "$log" 2>&1 || fail "cmake build"
cmake --install "$work/build" >> "$log" 2>&1 || fail "cmake install"
echo "$stamp" > "$prefix/.textseg-stamp"
echo "$prefix"
