"""What the confidence intervals of a fit are about, shared by the profile (:mod:`glmmlab.engine.solvers.profile`)
and the parametric bootstrap (:mod:`glmmlab.services.modeling.bootstrap`):

- lme4's parameters and their names (``confint(..., oldNames = FALSE)``): per grouping factor the standard
  deviations and correlations of its random effects in theta's order, ``sigma`` where the family has a dispersion
  (lme4's ``useSc``), then the fixed effects; the map between standard deviations/correlations and theta;
- the simulation of new responses from a fitted model (random effects drawn from their estimated distribution,
  then the response from the family's own sampler);
- percentile intervals of bootstrap replicates, by the rule of R's ``boot.ci(type = "perc")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.terms import FactorBlock, ModelFrame, merge_terms


@dataclass
class VarianceLayout:
    """The random-effect standard deviations and correlations of a model, one per theta entry, in theta's order."""

    blocks: list[FactorBlock]
    names: list[str]
    kinds: list[str]  # "sd" or "cor"
    keys: list[tuple[str, str, str]]  # (component, term of the row, term of the column) of each entry

    @classmethod
    def of(cls, blocks: list[FactorBlock]) -> "VarianceLayout":
        names, kinds, keys = [], [], []
        for b in blocks:
            for r, c in b.entry_positions():  # a structured term: the SDs and correlations it implies
                keys.append((b.component, b.names[r], b.names[c]))
                if r == c:
                    names.append(f"sd_{b.names[r]}|{b.component}")
                    kinds.append("sd")
                else:
                    names.append(f"cor_{b.names[r]}.{b.names[c]}|{b.component}")
                    kinds.append("cor")
        return cls(blocks, names, kinds, keys)

    def values(self, variances: list[dict], correlations: list[dict]) -> np.ndarray:
        """A fit's standard deviations and correlations in this order, from its tables (rows of
        ``random_effects_table()`` and ``correlations``)."""
        var = {(r["component"], r["term"]): r["variance"] for r in variances}
        cor = {}
        for r in correlations:
            cor[(r["component"], r["term1"], r["term2"])] = cor[(r["component"], r["term2"], r["term1"])] = \
                r["correlation"]
        out = []
        for (comp, a, b), kind in zip(self.keys, self.kinds):
            if kind == "sd":
                v = var.get((comp, a))
                out.append(math.sqrt(max(float(v), 0.0)) if v is not None else np.nan)
            else:
                v = cor.get((comp, a, b))
                out.append(float(v) if v is not None else 0.0)
        return np.asarray(out, dtype=float)

    def sdcor(self, theta: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """theta (relative Cholesky factors) and the residual scale -> standard deviations and correlations."""
        out, k = [], 0
        for b in self.blocks:
            for g in b.groups:
                m = len(g)
                tri = _lower_triangle(m)
                L = np.zeros((m, m))
                for i, j in tri:
                    L[i, j] = theta[k]
                    k += 1
                S = scale * scale * (L @ L.T)
                sd = np.sqrt(np.maximum(np.diag(S), 0.0))
                for i, j in tri:
                    d = sd[i] * sd[j]
                    out.append(sd[i] if i == j else (S[i, j] / d if d > 0 else 0.0))
        return np.asarray(out, dtype=float)

    def theta(self, v: np.ndarray, scale: float = 1.0) -> np.ndarray | None:
        """Standard deviations and correlations -> theta (None when the correlations are not a valid matrix).
        In Python floats, group by group: a profile point asks for it at every evaluation, and the groups are a
        few entries each (numpy's calls on 2 x 2 arrays cost ten times the arithmetic)."""
        vals = [float(x) for x in v]
        s2 = float(scale) * float(scale)
        out: list[float] = []
        k = 0
        for m in self._group_sizes():
            tri = _lower_triangle(m)
            entry = dict(zip(tri, vals[k:k + len(tri)]))
            k += len(tri)
            sd = [entry[(i, i)] for i in range(m)]
            S = [[(1.0 if i == j else entry[(i, j) if i >= j else (j, i)]) * (sd[i] * sd[j]) / s2 for j in range(m)]
                 for i in range(m)]
            L = _cholesky_psd(S)
            if L is None:
                return None
            out.extend(L[i][j] for i, j in tri)
        return np.asarray(out, dtype=float)

    def _group_sizes(self) -> list[int]:
        return [len(g) for b in self.blocks for g in b.groups]

    def factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each block's q x q lower Cholesky factor from :meth:`theta`'s entries (every sub-block's lower triangle,
        a structured term's too: its implied covariance, not its own parameters)."""
        out, k = [], 0
        for b in self.blocks:
            L = np.zeros((b.q, b.q))
            for r, c in b.entry_positions():
                L[r, c] = theta[k]
                k += 1
            out.append(L)
        return out

    def bounds(self) -> list[tuple[float | None, float | None]]:
        return [(0.0, None) if kind == "sd" else (-1.0, 1.0) for kind in self.kinds]


def _lower_triangle(m: int) -> list[tuple[int, int]]:
    """(row, column) of an m x m lower triangle column by column: theta's order within a correlated term."""
    return [(i, j) for j in range(m) for i in range(j, m)]


def _cholesky_psd(S: list[list[float]]) -> list[list[float]] | None:
    """The lower Cholesky factor of a positive semi-definite matrix (rows of Python floats; zero columns where a
    pivot is 0)."""
    m = len(S)
    L = [[0.0] * m for _ in range(m)]
    scale = max(1.0, max(abs(S[j][j]) for j in range(m)))
    for j in range(m):
        d = S[j][j] - sum(L[j][k] * L[j][k] for k in range(j))
        if d < -1e-10 * scale:
            return None
        d = math.sqrt(max(d, 0.0))
        L[j][j] = d
        for i in range(j + 1, m):
            r = S[i][j] - sum(L[i][k] * L[j][k] for k in range(j))
            if d > 1e-12 * math.sqrt(scale):
                L[i][j] = r / d
            elif abs(r) > 1e-8 * scale:
                return None
    return L


def parameter_names(mf: ModelFrame, family: str, fixed_names: list[str]) -> list[str]:
    """lme4's names of a model's parameters, in lme4's order."""
    sigma = ["sigma"] if FAMILIES[family].has_dispersion else []
    return VarianceLayout.of(merge_terms(mf.terms)).names + sigma + list(fixed_names)


def parameter_values(result: GlmmResult, names: list[str], layout: VarianceLayout) -> np.ndarray:
    """A fit's estimates of the parameters ``names`` (NaN for a fixed effect the fit dropped); ``layout``: that of
    the model's random effects."""
    sd_cor = layout.values(result.random_effects_table(), result.correlations or [])
    fixed = dict(zip(result.names, np.asarray(result.beta, dtype=float)))
    vals = dict(zip(layout.names, sd_cor))
    if result.var_residual is not None:
        vals["sigma"] = math.sqrt(max(result.var_residual, 0.0))
    vals.update(fixed)
    return np.array([vals.get(n, np.nan) for n in names], dtype=float)


class Simulator:
    """New responses from a fitted model, unconditional on its random effects (lme4's ``simulate`` with
    ``use.u = FALSE``, what ``bootMer`` does): b ~ N(0, Sigma) per level of each factor, then y from the family
    with mean g^-1(X beta + Z b + offset), the prior weights (binomial trials) and the dispersion.
    ``family_parameter``: the family's own parameters (a number, the negative binomial's theta, or a tuple by
    :attr:`Family.parameter_names`)."""

    def __init__(self, mf: ModelFrame, family: str, link: str, sd_cor: np.ndarray, beta: dict[str, float],
                 var_residual: float | None, family_parameter: float | tuple | None):
        self.blocks = merge_terms(mf.terms)
        layout = VarianceLayout.of(self.blocks)
        theta = layout.theta(np.asarray(sd_cor, dtype=float))  # scale 1: the absolute Cholesky factors
        if theta is None:
            raise ValueError("the fit's random-effect correlations are not a valid correlation matrix")
        self.lams = layout.factors(theta)  # the Cholesky factors of the covariance (a structured term's too)
        self.codes = [np.asarray(b.codes, dtype=np.intp) for b in self.blocks]
        fam = FAMILIES[family]
        self.family = fam if not fam.parameter_names or family_parameter is None else \
            fam.with_parameters(tuple(np.atleast_1d(np.asarray(family_parameter, dtype=float))))
        self.link = LINKS[link]
        coef = np.array([beta.get(nm, 0.0) for nm in mf.x_names], dtype=float)  # a dropped column counts 0
        self.eta = np.asarray(mf.X, dtype=float) @ coef + (0.0 if mf.offset is None else np.asarray(mf.offset))
        self.pw = np.ones(mf.n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
        self.phi = float(var_residual) if (self.family.has_dispersion and var_residual is not None) else 1.0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        eta = self.eta.copy()
        for b, L, codes in zip(self.blocks, self.lams, self.codes):
            effects = rng.standard_normal((b.n_levels, b.q)) @ L.T
            eta += np.einsum("nq,nq->n", b.Z, effects[codes])
        return self.family.sample(rng, self.link.linkinv(eta), self.pw, self.phi)


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bounds of each column of ``replicates`` (NaN rows are failed refits and left out), by the rule
    of R's ``boot.ci(type = "perc")``: order statistic (R + 1) alpha, interpolated on the normal quantile scale."""
    t = np.asarray(replicates, dtype=float)
    lower, upper = np.full(t.shape[1], np.nan), np.full(t.shape[1], np.nan)
    alphas = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    for j in range(t.shape[1]):
        col = np.sort(t[np.isfinite(t[:, j]), j])
        R = col.size
        if R == 0:
            continue
        out = []
        for a in alphas:
            rk = (R + 1) * a
            k = int(math.floor(rk + 1e-9))
            if abs(rk - k) < 1e-9 and 1 <= k <= R:
                out.append(col[k - 1])
            elif k < 1:
                out.append(col[0])
            elif k >= R:
                out.append(col[-1])
            else:
                q = special.ndtri
                w = (q(a) - q(k / (R + 1))) / (q((k + 1) / (R + 1)) - q(k / (R + 1)))
                out.append(col[k - 1] + w * (col[k] - col[k - 1]))
        lower[j], upper[j] = out
    return lower, upper
