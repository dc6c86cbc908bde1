"""Simulation-based scaled residuals (randomised quantile residuals, as R's DHARMa computes them) and the tests
that compare the observed response with responses simulated from the fitted model.

A fit is checked by simulating ``n_sim`` new responses from it and reading each observed value against its own
row's simulations:

- **scaled residual** of row i: the empirical CDF of its simulations at the observed value. Where simulations tie
  with the observed value (every count family, the exact zeros of a Tweedie, a binomial proportion), it is drawn
  uniformly between the share of simulations below the value and the share at or below it (the probability
  integral transform of Dunn and Smyth's randomised quantile residuals; DHARMa's default ``method = "PIT"``).
  Under a correct model the residuals are uniform on (0, 1), whatever the family.
- **dispersion test** (DHARMa's default ``testDispersion``): the variance of the observed response's differences
  from the fitted means against the same statistic of every simulated response; the ratio observed / mean
  simulated, above 1 for overdispersion, and a two-sided simulation p-value.
- **zero-inflation test** (``testZeroInflation``): the number of zeros observed against the numbers simulated.
- **uniformity test** (``testUniformity``): Kolmogorov-Smirnov of the scaled residuals against U(0, 1).
- **outlier test** (``testOutliers(type = "binomial")``): residuals at 0 or 1 (outside every simulation) against
  their expected frequency 2 / (n_sim + 1), by an exact binomial test.

As in DHARMa, the "fitted" values of the dispersion test and of the residual plot are the population-level means
(the random effects at 0: lme4's ``predict(re.form = ~0, type = "response")``), and a binomial response with
trials is read as its counts of successes (proportion x trials) on both sides.

What a row's distribution needs, fixed across simulations, is one object, :class:`RowInputs` (built from a fit
by :func:`glmmlab.engine.inference.simulate_models.row_inputs`): the family member, the mean's linear predictor
(:class:`LinearPart`: its link, fixed part, fitted modes' contribution and the random effects to draw from), prior
weights, the dispersion (a number or one per row) and, for a model of structural zeros, a second linear predictor
for the probability of a zero (and whether the count part is truncated at zero: a hurdle). The simulations are
drawn in chunks of columns whose size depends on the number of rows only, so a seed gives the same residuals on any
machine and whatever the memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link

CHUNK_CELLS = 1 << 21  # simulated values drawn at once (rows x columns): about 16 MB per array
KEEP_CELLS = 5_000_000  # the simulated matrix is kept (``keep``) up to this many values
COUNT_FAMILIES = ("binomial", "poisson", "negbin", "nbinom1", "betabinomial")  # DHARMa's integer responses
ALTERNATIVES = ("two.sided", "greater", "less")


@dataclass(frozen=True)
class RandomPart:
    """The random effects of one grouping factor, drawn afresh for an unconditional simulation: per level q
    effects b = L z with z standard normal, entering row i's linear predictor as Z[i] . b[codes[i]]."""

    codes: np.ndarray  # (n,) the level of each row
    Z: np.ndarray  # (n, q) the factor's model-matrix columns (an intercept's ones may be a broadcast view)
    chol: np.ndarray  # (q, q) lower Cholesky factor of the effects' covariance (absolute, not relative)
    n_levels: int

    def draw(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """(n, k): the contribution to each row's linear predictor of k independent draws of the effects."""
        q = self.chol.shape[0]
        z = rng.standard_normal((self.n_levels, q, k))
        b = np.einsum("ij,ljk->lik", self.chol, z)  # (levels, q, k)
        if q == 1:
            return self.Z[:, :1] * b[self.codes, 0, :]
        return np.einsum("nq,nqk->nk", self.Z, b[self.codes])


@dataclass(frozen=True)
class LinearPart:
    """One linear predictor of a model and what it becomes on its own scale: ``link.linkinv(eta_fixed + r)`` with r
    the fitted conditional modes' contribution ``eta_modes`` (a conditional simulation) or a fresh draw of every
    :class:`RandomPart` (unconditional). The mean of the response is one; a model of structural zeros has another
    (a logit link to the probability of a zero, with random effects of its own)."""

    link: Link
    eta_fixed: np.ndarray  # (n,) X beta + offset
    eta_modes: np.ndarray | None = None  # (n,) Z b-hat; None: no random effects
    random: tuple[RandomPart, ...] = ()

    def population(self) -> np.ndarray:
        """(n,): the values with the random effects at 0."""
        return np.asarray(self.link.linkinv(self.eta_fixed), dtype=float)

    def draw(self, rng: np.random.Generator, k: int, conditional: bool = False) -> np.ndarray:
        """(n, k): the values of k simulations."""
        eta = np.repeat(self.eta_fixed[:, None], k, axis=1)
        if conditional:
            if self.eta_modes is not None:
                eta += self.eta_modes[:, None]
        else:
            for part in self.random:
                eta += part.draw(rng, k)
        return np.asarray(self.link.linkinv(eta), dtype=float)


@dataclass(frozen=True)
class RowInputs:
    """Everything per row that the response's distribution needs, fixed across simulations.

    Each simulation draws the means from ``mean`` (a :class:`LinearPart`), the response from ``family.sample``
    with the prior weights and the dispersion ``phi`` (one number, or one per row for a dispersion model), then,
    where the model has structural zeros, the probability of a zero from ``zero`` (another :class:`LinearPart`)
    and sets the response to 0 with that probability (zero-inflation; for a hurdle the family's sampler draws the
    zero-truncated part). ``scale`` turns a draw into the response DHARMa compares (a binomial proportion into its
    count of successes).
    """

    family: Family  # the member at the fit's estimates of its own parameters
    mean: LinearPart
    weights: np.ndarray  # (n,) prior weights (binomial and beta-binomial: the trials)
    phi: float | np.ndarray = 1.0  # the dispersion (Gaussian variance, Gamma's phi): a number or per row
    zero: LinearPart | None = None  # the probability of a structural zero, or None
    scale: np.ndarray | None = None  # (n,) the factor to DHARMa's response scale (trials), or None
    truncated: bool = False  # the family's draws are truncated at zero (a hurdle's count part)

    @property
    def n(self) -> int:
        return int(self.mean.eta_fixed.shape[0])

    @property
    def integer(self) -> bool:
        """Whether the response is integer-valued (DHARMa's ``integerResponse``; every family's residuals are
        randomised where simulations tie with the observed value, whatever this says)."""
        return self.family.name in COUNT_FAMILIES

    def fitted(self) -> np.ndarray:
        """The population-level means on DHARMa's response scale: the random effects at 0 (lme4's
        ``predict(re.form = ~0, type = "response")``; a binomial's probability, as DHARMa takes it), times the
        probability of no structural zero."""
        mu = self.mean.population()
        if self.truncated:  # a hurdle's positive part: the truncated mean mu / (1 - P(0))
            mu = mu / -np.expm1(log_zero_probability(self.family, mu))
        return mu if self.zero is None else (1.0 - self.zero.population()) * mu

    def observed(self, y: np.ndarray) -> np.ndarray:
        """The model frame's response on DHARMa's response scale."""
        y = np.asarray(y, dtype=float)
        return y if self.scale is None else np.rint(y * self.scale)

    def draw(self, rng: np.random.Generator, k: int, conditional: bool = False) -> np.ndarray:
        """(n, k): k responses simulated from the model, on DHARMa's response scale."""
        # a fresh draw of the random effects can take a mean past the family's range under a link that does not
        # keep it inside (Gamma's inverse link, Poisson's identity): it is held at the range's end
        lo, hi = self.family.mean_range
        mu = np.clip(self.mean.draw(rng, k, conditional), lo, hi)
        # a dispersion per row (a dispersion model) goes to the sampler as a column, like the weights
        phi: Any = self.phi if np.ndim(self.phi) == 0 else np.asarray(self.phi, dtype=float)[:, None]
        y = np.asarray(self.family.sample(rng, mu, self.weights[:, None], phi), dtype=float)
        if self.truncated:
            y = truncated_redraw(self.family, rng, y, mu)
        if self.zero is not None:
            y[rng.random(y.shape) < self.zero.draw(rng, k, conditional)] = 0.0
        if self.scale is not None:
            y = np.rint(y * self.scale[:, None])
        return y


# -- the zero-truncated count part of a hurdle ----------------------------------------------------------------------
def _count_distribution(family: Family, mu: np.ndarray):
    """scipy's distribution of a count family's member at means ``mu`` (its parameters per row or one number)."""
    if family.name == "poisson":
        return stats.poisson(mu)
    if family.name == "negbin":
        th = np.asarray(family.parameter, dtype=float)
        return stats.nbinom(th, th / (th + mu))
    if family.name == "nbinom1":
        phi = np.asarray(family.parameters[0], dtype=float)
        return stats.nbinom(mu / phi, 1.0 / (1.0 + phi))
    return None


def log_zero_probability(family: Family, mu: np.ndarray) -> np.ndarray:
    """log P(y = 0) of a count family's member at means ``mu`` (-inf for a continuous family: no mass at 0)."""
    dist = _count_distribution(family, np.maximum(mu, 1e-300))
    return np.full(np.shape(mu), -np.inf) if dist is None else dist.logpmf(0)


REDRAW_ROUNDS = 12  # rounds of redrawing a hurdle's zeros before the few left are drawn by inversion


def truncated_redraw(family: Family, rng: np.random.Generator, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Draws of the family truncated at zero: every zero among the untruncated draws ``y`` is drawn again from the
    family until it is positive (at most :data:`REDRAW_ROUNDS` rounds, each over the cells still at zero), and
    those still at zero then by inversion, F^-1(u) with u uniform on (F(0), 1). Both give the truncated
    distribution, and so do the positive draws of ``y``; the rounds avoid most of the inversions, which are slow."""
    zero = y == 0.0
    if not np.any(zero) or family.name not in ("poisson", "negbin", "nbinom1"):
        return y
    out = y.copy()
    idx = np.flatnonzero(zero)
    mu_c = np.broadcast_to(np.maximum(mu, 1e-300), y.shape).ravel()[idx]
    par: Any = None
    if family.name != "poisson":  # the member's parameter per cell (a dispersion model has one per row)
        par = np.broadcast_to(np.asarray(family.parameters[0], dtype=float), y.shape).ravel()[idx]
    for _ in range(REDRAW_ROUNDS):
        if par is None:
            draw = rng.poisson(mu_c).astype(float)
        elif family.name == "negbin":
            draw = rng.negative_binomial(par, par / (par + mu_c)).astype(float)
        else:
            draw = rng.negative_binomial(mu_c / par, 1.0 / (1.0 + par)).astype(float)
        ok = draw > 0
        out.ravel()[idx[ok]] = draw[ok]
        idx, mu_c = idx[~ok], mu_c[~ok]
        par = None if par is None else par[~ok]
        if idx.size == 0:
            return out
    member = family if par is None else (replace(family, parameter=par, parameters=(par,))
                                         if family.name == "negbin" else replace(family, parameters=(par,)))
    dist: Any = _count_distribution(member, mu_c)
    f0 = dist.cdf(0)
    u = f0 + rng.random(mu_c.shape) * (1.0 - f0)
    out.ravel()[idx] = np.maximum(dist.ppf(np.minimum(u, np.nextafter(1.0, 0.0))), 1.0)
    return out


# -- the residuals -------------------------------------------------------------------------------------------------
def pit_residuals(simulated: np.ndarray, observed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DHARMa's scaled residuals of an (n, n_sim) matrix of simulations: per row the share of simulations below
    the observed value, or where some tie with it a uniform draw between the shares below and at or below."""
    simulated = np.asarray(simulated, dtype=float)
    observed = np.asarray(observed, dtype=float)[:, None]
    below = np.count_nonzero(simulated < observed, axis=1)
    at_or_below = np.count_nonzero(simulated <= observed, axis=1)
    return pit_from_counts(below, at_or_below, simulated.shape[1], rng)


def pit_from_counts(below: np.ndarray, at_or_below: np.ndarray, n_sim: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """The scaled residuals from each row's numbers of simulations below and at or below its observed value: one
    uniform draw per row (every row draws, so a row's residual does not depend on the others' ties)."""
    lower = np.asarray(below, dtype=float) / n_sim
    upper = np.asarray(at_or_below, dtype=float) / n_sim
    u = rng.random(lower.shape[0])
    return np.where(upper > lower, lower + u * (upper - lower), lower)


@dataclass(frozen=True)
class Simulation:
    """Scaled residuals and the per-simulation statistics the tests read."""

    residuals: np.ndarray  # (n,) scaled residuals in [0, 1]
    n_sim: int
    seed: int | None
    conditional: bool
    integer: bool
    observed: np.ndarray  # (n,) the response on DHARMa's scale
    fitted: np.ndarray  # (n,) population-level means (the dispersion test's and the plot's)
    zeros_observed: int
    zeros_simulated: np.ndarray  # (n_sim,) zeros in each simulated response
    spread_observed: float  # var(observed - fitted)
    spread_simulated: np.ndarray  # (n_sim,) var(simulated - fitted)
    simulated: np.ndarray | None = field(default=None, repr=False)  # (n, n_sim) when kept


def simulate(inputs: RowInputs, y: np.ndarray, n_sim: int = 250, seed: int | None = None,
             conditional: bool = False, keep: bool | None = None) -> Simulation:
    """Simulate ``n_sim`` responses from the model of ``inputs`` (random effects drawn afresh unless
    ``conditional``), and the scaled residuals of the observed response ``y`` (the model frame's). Reproducible:
    the draws come from ``numpy.random.default_rng(seed)`` (two independent streams of its ``SeedSequence``, the
    simulations' and the residuals' randomisation). ``keep``: keep the simulated matrix (default: up to
    :data:`KEEP_CELLS` values)."""
    n_sim = int(n_sim)
    if n_sim < 2:
        raise GlmmInputError(f"n_sim must be at least 2 to compute scaled residuals (got {n_sim}); 250 is usual")
    n = inputs.n
    obs = inputs.observed(y)
    if obs.shape != (n,):
        raise GlmmInputError(f"the response has {obs.shape[0]} values for {n} rows of the model")
    ss = np.random.SeedSequence(seed)
    sim_rng, pit_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    keep = (n * n_sim <= KEEP_CELLS) if keep is None else keep
    fitted = inputs.fitted()
    below = np.zeros(n, dtype=np.int64)
    at_or_below = np.zeros(n, dtype=np.int64)
    zeros = np.empty(n_sim, dtype=np.int64)
    spread = np.empty(n_sim)
    kept = np.empty((n, n_sim)) if keep else None
    step = max(1, CHUNK_CELLS // max(n, 1))  # depends on n only: the same seed draws the same numbers
    with np.errstate(all="ignore"):
        for a in range(0, n_sim, step):
            k = min(step, n_sim - a)
            sims = inputs.draw(sim_rng, k, conditional)
            below += np.count_nonzero(sims < obs[:, None], axis=1)
            at_or_below += np.count_nonzero(sims <= obs[:, None], axis=1)
            zeros[a:a + k] = np.count_nonzero(sims == 0.0, axis=0)
            spread[a:a + k] = np.var(sims - fitted[:, None], axis=0, ddof=1) if n > 1 else np.nan
            if kept is not None:
                kept[:, a:a + k] = sims
    if not np.all(np.isfinite(spread)):
        raise GlmmInputError("simulations from this fit gave values that are not finite (NaN or infinite); the "
                             "estimates may lie on the edge of the family's range")
    residuals = pit_from_counts(below, at_or_below, n_sim, pit_rng)
    return Simulation(residuals, n_sim, seed, conditional, inputs.integer, obs, fitted,
                      int(np.count_nonzero(obs == 0.0)), zeros,
                      float(np.var(obs - fitted, ddof=1)) if n > 1 else float("nan"), spread, kept)


def create(simulated: np.ndarray, observed: np.ndarray, fitted: np.ndarray, seed: int | None = None,
           integer: bool = False) -> Simulation:
    """A :class:`Simulation` from simulations made elsewhere (DHARMa's ``createDHARMa``): an (n, n_sim) matrix of
    simulated responses, the observed response and the predicted means (n values each); the residuals'
    randomisation draws from the second stream of ``SeedSequence(seed)``, as :func:`simulate`'s does."""
    sims = np.asarray(simulated, dtype=float)
    obs = np.asarray(observed, dtype=float)
    fit = np.asarray(fitted, dtype=float)
    if sims.ndim != 2 or sims.shape[0] != obs.shape[0] or fit.shape != obs.shape or obs.ndim != 1:
        raise GlmmInputError(f"simulations must be an n x n_sim matrix for n observed and fitted values (got "
                             f"{sims.shape}, {obs.shape} and {fit.shape})")
    if sims.shape[1] < 2:
        raise GlmmInputError("scaled residuals need at least 2 simulations per row")
    if not np.all(np.isfinite(sims)):
        raise GlmmInputError("the simulations hold values that are not finite (NaN or infinite)")
    pit_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    n, n_sim = sims.shape
    return Simulation(pit_residuals(sims, obs, pit_rng), n_sim, seed, False, bool(integer), obs, fit,
                      int(np.count_nonzero(obs == 0.0)), np.count_nonzero(sims == 0.0, axis=0),
                      float(np.var(obs - fit, ddof=1)) if n > 1 else float("nan"),
                      np.var(sims - fit[:, None], axis=0, ddof=1) if n > 1 else np.full(n_sim, np.nan), sims)


# -- the tests -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResidualTest:
    """One test's outcome, as R's ``htest`` reports it."""

    name: str
    method: str
    statistic: float
    statistic_name: str
    p_value: float
    alternative: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        def num(v):
            return None if v is None or not np.isfinite(v) else float(v)

        return {"test": self.name, "method": self.method, "statistic": num(self.statistic),
                "statistic_name": self.statistic_name, "p_value": num(self.p_value), "alternative": self.alternative,
                **{k: (num(v) if isinstance(v, (float, np.floating)) else v) for k, v in self.details.items()}}


def _alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise GlmmInputError(f"alternative must be one of {', '.join(ALTERNATIVES)} (got {alternative!r})")
    return alternative


def simulation_p_value(simulated: np.ndarray, observed: float, alternative: str = "two.sided") -> float:
    """DHARMa's ``getP``: the share of simulated statistics at least as extreme as the observed one (two-sided:
    twice the smaller tail, at most 1)."""
    simulated = np.asarray(simulated, dtype=float)
    ge, le = float(np.mean(simulated >= observed)), float(np.mean(simulated <= observed))
    if _alternative(alternative) == "greater":
        return ge
    if alternative == "less":
        return le
    return min(2.0 * min(ge, le), 1.0)


def _ratio(observed: float, simulated: np.ndarray) -> float:
    m = float(np.mean(simulated))
    return observed / m if m != 0 else (float("nan") if observed == 0 else float("inf"))


def dispersion_test(sim: Simulation, alternative: str = "two.sided") -> ResidualTest:
    """DHARMa's default dispersion test: var(observed - fitted) against var(simulated - fitted) of each
    simulation; the statistic is their ratio to the simulations' mean (> 1: overdispersion)."""
    p = simulation_p_value(sim.spread_simulated, sim.spread_observed, alternative)
    return ResidualTest("dispersion", "DHARMa nonparametric dispersion test via sd of residuals fitted vs. simulated",
                      _ratio(sim.spread_observed, sim.spread_simulated), "dispersion", p, alternative,
                      {"observed": sim.spread_observed, "simulated_mean": float(np.mean(sim.spread_simulated))})


def zero_inflation_test(sim: Simulation, alternative: str = "two.sided") -> ResidualTest:
    """DHARMa's zero-inflation test: the observed number of zeros against the numbers in the simulations; the
    statistic is their ratio to the simulations' mean (> 1: more zeros than the model expects)."""
    p = simulation_p_value(sim.zeros_simulated, sim.zeros_observed, alternative)
    return ResidualTest("zero_inflation", "DHARMa zero-inflation test via comparison to expected zeros with "
                      "simulation under H0 = fitted model", _ratio(sim.zeros_observed, sim.zeros_simulated),
                      "ratioObsSim", p, alternative,
                      {"observed_zeros": sim.zeros_observed,
                       "simulated_zeros_mean": float(np.mean(sim.zeros_simulated))})


def uniformity_test(residuals: np.ndarray, alternative: str = "two.sided") -> ResidualTest:
    """DHARMa's ``testUniformity``: the one-sample Kolmogorov-Smirnov test of the scaled residuals against
    U(0, 1) (exact for small samples, as R's ``ks.test``)."""
    scipy_alt = {"two.sided": "two-sided", "greater": "greater", "less": "less"}[_alternative(alternative)]
    ks = stats.kstest(np.asarray(residuals, dtype=float), "uniform", alternative=scipy_alt)
    return ResidualTest("uniformity", "Asymptotic one-sample Kolmogorov-Smirnov test" if residuals.size > 100 else
                      "Exact one-sample Kolmogorov-Smirnov test", float(ks.statistic), "D", float(ks.pvalue),
                      alternative)


def outlier_test(sim: Simulation, alternative: str = "two.sided") -> ResidualTest:
    """DHARMa's ``testOutliers(type = "binomial")``: residuals outside every simulation (below 1 / (n_sim + 1)
    or above 1 - 1 / (n_sim + 1)) against their expected frequency 2 / (n_sim + 1), by an exact binomial test."""
    r = sim.residuals
    edge = 1.0 / (sim.n_sim + 1)
    outliers = int(np.count_nonzero(r < edge) + np.count_nonzero(r > 1.0 - edge))
    scipy_alt = {"two.sided": "two-sided", "greater": "greater", "less": "less"}[_alternative(alternative)]
    p = float(stats.binomtest(outliers, r.size, 2.0 * edge, alternative=scipy_alt).pvalue)
    return ResidualTest("outliers", "DHARMa outlier test based on exact binomial test with approximate expectations",
                      float(outliers), "outliers at both margin(s)", p, alternative,
                      {"observations": int(r.size), "expected_frequency": 2.0 * edge,
                       "frequency": outliers / max(r.size, 1)})
