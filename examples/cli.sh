#!/usr/bin/env bash
# The command line on lme4's sleepstudy: a fit as text, the same fit as JSON, and a comparison of two models.
#
# Run from the repository root:  bash examples/cli.sh [DATA.csv]
# It uses .venv/bin/glmmlab (made by scripts/run.sh or scripts/test.sh); set PYTHON to run glmmlab with another
# interpreter instead (PYTHON=python3 bash examples/cli.sh). DATA defaults to the reference data beside the
# repository, ../shared/reference/models/sleepstudy_slope.csv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$root/../shared/reference/models/sleepstudy_slope.csv}"
if [ -n "${PYTHON:-}" ]; then
  glmmlab=("$PYTHON" -m glmmlab.interfaces.cli)
  py="$PYTHON"
else
  glmmlab=("$root/.venv/bin/glmmlab")
  py="$root/.venv/bin/python"
fi

"${glmmlab[@]}" --version

echo "== glmmlab fit: random intercept and slope per subject, three BLUP rows per table"
"${glmmlab[@]}" fit "$data" --formula "Reaction ~ Days + (Days | Subject)" --blups 3

echo
echo "== the same fit as JSON (without the per-row diagnostics), a few of its keys"
"${glmmlab[@]}" fit "$data" --formula "Reaction ~ Days + (Days | Subject)" --format json --diagnostics none \
  | "$py" -c '
import json, sys
doc = json.load(sys.stdin)
print("method", doc["method"], "| n_obs", doc["n_obs"], "| groups", doc["groups"])
for row in doc["fixed_effects"]:
    print("%-12s estimate %9.4f  df %6.2f  p %.3g" % (row["variable"], row["estimate"], row["df"], row["p_value"]))
r2 = {k: round(v, 4) for k, v in doc["r2"].items()}
print("log-likelihood", round(doc["fit"]["log_likelihood"], 4), "| R2", r2)
'

echo
echo "== glmmlab compare: is the random slope needed?"
"${glmmlab[@]}" compare "$data" --formula "Reaction ~ Days + (1 | Subject)" \
  --formula "Reaction ~ Days + (Days | Subject)"
