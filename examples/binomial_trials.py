"""A binomial GLMM with trials: contagious bovine pleuropneumonia in 15 herds over four periods (lme4's cbpp).

Run from the repository root:  .venv/bin/python examples/binomial_trials.py [DATA.csv]

DATA defaults to ../shared/reference/models/cbpp_trials.csv beside the repository: per herd and period the number
of new cases (incidence) among the animals (size).
"""

import sys
from pathlib import Path

import pandas as pd

import glmmlab

DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "models" / "cbpp_trials.csv"

cbpp = pd.read_csv(sys.argv[1] if len(sys.argv) > 1 else DATA)

# Successes and failures as lme4 writes them; period is a text column, so a factor (reference level P1).
fit = glmmlab.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
print(fit.summary())

# The same model written as a proportion with the number of trials as prior weights: the same fit.
cbpp["proportion"] = cbpp["incidence"] / cbpp["size"]
same = glmmlab.glmm("proportion ~ period + (1 | herd)", cbpp, family="binomial", weights="size")
print(f"log-likelihood, cbind form {fit.llf:.4f}; proportion with weights {same.llf:.4f}")
print()

print("Does the incidence change over the periods? (Wald chi-square over the three period coefficients)")
print(fit.anova())
print()
print("Probability of a new case per period (marginal means on the response scale):")
print(fit.emmeans("period").round(4))
print()
print("Pairwise comparisons of the periods (log odds ratios, Holm-adjusted):")
print(fit.pairs("period", adjust="holm").round(4))
print()
print("The five herds with the largest random intercepts:")
print(fit.ranef.sort_values("value", ascending=False).head(5).to_string(index=False))
print()
print("Predicted probability for a herd not in the data (population level, with a 95% interval):")
print(fit.predict(pd.DataFrame({"period": ["P1", "P4"]}), interval="confidence").round(4))
