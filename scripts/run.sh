#!/usr/bin/env bash
# Sets everything up and starts the workbench at http://127.0.0.1:8765 (the default project lives in ./projects/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/glmmlab" serve "$@"
