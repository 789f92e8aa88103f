#!/usr/bin/env bash
# The main job: set up, then run segmentation_node on real CamVid frames and show what it published.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/textseg" demo "$@"
