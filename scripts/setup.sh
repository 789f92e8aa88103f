#!/usr/bin/env bash
# Idempotent set-up: .venv/ with the runtime, the training package, the test tools, and the
# default model artifact. Re-running it does only what changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
  echo "setup: creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi

# Install when any requirement or packaging file changed since the last successful set-up.
deps_hash=$(cat requirements/*.txt setup.py setup.cfg training/pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.textseg-deps" 2>/dev/null)" != "$deps_hash" ]; then
  echo "setup: installing packages (about a minute on a fresh machine; log: .venv/setup.log)"
  pip_install() {
    if ! "$py" -m pip install --disable-pip-version-check "$@" >> "$venv/setup.log" 2>&1; then
      tail -n 30 "$venv/setup.log" >&2
      echo "setup: pip install failed (full log: $venv/setup.log)" >&2
      exit 1
    fi
  }
  pip_install --upgrade pip
  pip_install -c requirements/constraints.txt \
    -r requirements/runtime.txt -r requirements/training.txt -r requirements/dev.txt
  pip_install --no-deps -e . -e training
  echo "$deps_hash" > "$venv/.textseg-deps"
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
