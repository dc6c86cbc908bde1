#!/usr/bin/env bash
# Creates or reuses .venv in the repository root and installs glmmlab into it in editable mode.
# Usage: scripts/setup.sh [dev]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
extra=""
if [ "${1:-}" = "dev" ]; then extra="[dev]"; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
