"""Writes relevel.csv: the data of the reference-level case (run once; relevel.R fits it with lme4)."""

import numpy as np
import pandas as pd

rng = np.random.default_rng(11)
n = 300
g = rng.integers(0, 12, n)
f = rng.choice(["a", "b", "c"], n)
x = rng.normal(size=n).round(4)
u = rng.normal(0, 0.7, 12)
eff = {"a": 0.0, "b": 0.6, "c": -0.3}
y = 2 + 0.5 * x + np.array([eff[k] for k in f]) + 0.4 * x * (f == "c") + u[g] + rng.normal(0, 0.8, n)
mu = np.exp(0.2 + 0.3 * x + np.array([eff[k] for k in f]) + 0.5 * u[g])
pd.DataFrame({"g": [f"G{k:02d}" for k in g], "f": f, "x": x, "y": y.round(5),
              "count": rng.poisson(mu)}).to_csv("relevel.csv", index=False)
