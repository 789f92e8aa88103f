#!/usr/bin/env bash
# Idempotent set-up: a venv with the runtime, ROS 2 as PyPI wheels, the training package, the
# test tools, and the default model artifact. Re-running it does only what changed.
#   ./scripts/setup.sh                     ROS 2 Jazzy (the default, LTS) in .venv/
#   ROS_DISTRO=kilted ./scripts/setup.sh   ROS 2 Kilted in .venv-kilted/
# (scripts/ros_distro.sh: the choices; any other value is refused, naming them.)
set -euo pipefail
case "${1:-}" in
  -h|--help)
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0 ;;
  "") ;;
  *) echo "setup: unknown argument '$1' (setup.sh takes none; --help says what it does)" >&2
     exit 2 ;;
esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=ros_distro.sh
source "$root/scripts/ros_distro.sh"
venv="$ros_venv"
py="$venv/bin/python"
ros_pins="$ros_requirements/ros.txt"

if [ ! -x "$py" ]; then
  echo "setup: creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi

# Install when any requirement or packaging file changed since the last successful set-up.
deps_hash=$(cat requirements/*.txt "$ros_pins" setup.py setup.cfg training/pyproject.toml \
  | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.textseg-deps" 2>/dev/null)" != "$deps_hash" ]; then
  echo "setup: installing packages for ROS 2 $ros_distro (about a minute on a fresh machine;" \
    "log: ${venv#"$root"/}/setup.log)"
  pip_run() {  # pip_run install ARGS...
    if ! "$py" -m pip "$@" --disable-pip-version-check >> "$venv/setup.log" 2>&1; then
      tail -n 30 "$venv/setup.log" >&2
      echo "setup: pip $1 failed (full log: $venv/setup.log)" >&2
      exit 1
    fi
  }
  pip_run install --upgrade pip
  if ! ros_clear_other_wheels "$venv" >> "$venv/setup.log"; then  # says so when it does
    echo "setup: removing the venv's old ROS wheels failed (log: $venv/setup.log)" >&2
    exit 1
  fi
  pip_run install -c requirements/constraints.txt -r requirements/runtime.txt -r "$ros_pins" \
    -r requirements/training.txt -r requirements/dev.txt
  ros_mark_wheels "$venv"
  pip_run install --no-deps -e . -e training
  echo "$deps_hash" > "$venv/.textseg-deps"
  echo "setup: ROS 2 $ros_distro packages installed in ${venv#"$root"/}/"
else
  echo "setup: ${venv#"$root"/}/ is up to date (ROS 2 $ros_distro)"
fi

# The default artifact is the trained model committed at models/textseg_default.onnx
# (scripts/train_default_model.sh reproduces it); a random network is only ever exported on
# request (textseg-train export --init random).
model=$("$py" -c 'from textseg.engine import default_model_path; print(default_model_path())')
if [ ! -f "$model" ]; then
  echo "setup: the default model $model is missing: it is part of the repository" \
    "(git checkout -- models/), or train it with scripts/train_default_model.sh" >&2
  exit 1
fi
