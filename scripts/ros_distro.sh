# Sourced by the set-up, test, demo and bench scripts: which ROS 2 distro's wheels, and where.
# ROS_DISTRO picks it: jazzy (the default, LTS) or kilted. Each has its own pins
# (requirements/<distro>/), its own venv and its own vision_msgs build, so switching is
# `ROS_DISTRO=kilted ./scripts/test.sh` and never reinstalls the other one.
# Sets: ros_distro, ros_venv (.venv for the default distro, .venv-<distro> otherwise),
# ros_requirements (requirements/<distro>). The Python side's copy of these facts is
# src/textseg/ros_compat.py (test/test_ros_compat.py checks that they agree).
ros_default_distro=jazzy
ros_distros=(jazzy kilted)
ros_distro="${ROS_DISTRO:-$ros_default_distro}"
ros_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case " ${ros_distros[*]} " in
  *" $ros_distro "*) ;;
  *)
    hint=""
    if [ "$ros_distro" = humble ]; then
      hint=" (Humble has no wheels on PyPI: run textseg on a ROS 2 Humble install, docs/node.md)"
    fi
    echo "ROS_DISTRO=$ros_distro: not a distro these scripts install$hint; choose one of:" \
      "jazzy (the default), kilted" >&2
    exit 2
    ;;
esac
if [ "$ros_distro" = "$ros_default_distro" ]; then
  ros_venv="$ros_root/.venv"
else
  ros_venv="$ros_root/.venv-$ros_distro"
fi
ros_requirements="$ros_root/requirements/$ros_distro"

# Before installing $ros_requirements/ros.txt into a venv: remove the ROS wheels that another
# distro's (or older) pins put there, and only them, since pip would leave the packages the
# new stack no longer names beside it (a .venv made before Jazzy became the default holds
# Kilted's). torch and everything else stay. After a successful install: ros_mark_wheels VENV.
ros_pins_hash() { sha256sum < "$ros_requirements/ros.txt" | cut -c1-16; }
ros_clear_other_wheels() {  # ros_clear_other_wheels VENV (pip's output on stdout)
  local venv="$1" old
  [ "$(cat "$venv/.textseg-ros" 2> /dev/null)" = "$(ros_pins_hash)" ] && return 0
  old=$("$venv/bin/python" -m pip list --disable-pip-version-check --format=freeze 2> /dev/null \
    | sed -n 's/^\(ros-[A-Za-z0-9_.-]*\)==.*/\1/p')
  [ -n "$old" ] || return 0
  echo "setup: replacing the ROS 2 wheels in ${venv#"$ros_root"/} with $ros_distro's" >&2
  # shellcheck disable=SC2086 # one package per word
  "$venv/bin/python" -m pip uninstall --disable-pip-version-check -y $old
}
ros_mark_wheels() { ros_pins_hash > "$1/.textseg-ros"; }
