"""Random intercepts and slopes for sleepstudy: fit, read the tables, compare with a simpler model.

Run from the repository root:  .venv/bin/python examples/quickstart.py [DATA.csv]

DATA defaults to lme4's sleepstudy in the reference data beside the repository
(../shared/reference/models/sleepstudy_slope.csv): reaction times (Reaction) of 18 subjects (Subject) over ten
days of sleep deprivation (Days).
"""

import sys
import warnings
from pathlib import Path

import pandas as pd

import glmmlab

DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "models" / "sleepstudy_slope.csv"

sleep = pd.read_csv(sys.argv[1] if len(sys.argv) > 1 else DATA)

# Each subject gets its own intercept and slope over Days, correlated (lme4's (Days | Subject)).
fit = glmmlab.glmm("Reaction ~ Days + (Days | Subject)", sleep)
print(fit.summary())

print("Fixed effects:")
print(pd.DataFrame({"estimate": fit.params, "std_error": fit.bse, "df": fit.df_resid, "p": fit.pvalues}))
print()
print("Random effects (variances on the response scale):")
print(fit.varcorr)
print()
print("Omnibus test of each term (F with Satterthwaite's denominator df):")
print(fit.anova())
print()
print("Mean reaction time at days 0, 3, 6 and 9 (estimated marginal means):")
print(fit.emmeans("Days", at=[0, 3, 6, 9]))
print()
print("Profile-likelihood intervals (lme4's confint):")
print(fit.conf_int(method="profile").round(3))
print()

# Is the random slope needed? A likelihood-ratio test against the random-intercept model (both refitted by ML).
simpler = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", sleep)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "refitting model(s) with ML (instead of REML)", as lme4 says
    table = glmmlab.anova(simpler, fit)
print("Model comparison:")
print(table[["npar", "AIC", "BIC", "logLik", "Chisq", "Df", "Pr(>Chisq)"]].to_string())
r2 = fit.r2()
print(f"\nR² (Nakagawa): marginal {r2['marginal']:.3f}, conditional {r2['conditional']:.3f}")
