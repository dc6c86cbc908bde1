#!/usr/bin/env bash
# Sets everything up (the venv with dev extras, Debian's chromium for the browser tests) and runs the test suite.
#   bash scripts/test.sh            the default suite: every test not marked slow (what CI runs)
#   bash scripts/test.sh --all      every test, slow ones included (live lme4 runs, Dask fits of the slowest
#                                   cases, the benchmark smoke run)
# Further arguments go to pytest, e.g. bash scripts/test.sh tests/engine -q
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh dev
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/lint-imports
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy src
if [ "${1:-}" = "--all" ]; then
  shift
  .venv/bin/python -m pytest "$@"
else
  .venv/bin/python -m pytest -m "not slow" "$@"
fi
