"""Simulation-based scaled residuals of a fitted model (R's DHARMa: ``simulateResiduals``), their tests and plots.

``result.simulate_residuals(n_sim=250, seed=123)`` simulates ``n_sim`` responses from the fit
(:mod:`glmmlab.engine.inference.simulate`) and returns a :class:`SimulatedResiduals`: the scaled residuals (uniform
on (0, 1) under a correct model, for every family), DHARMa's tests (dispersion, zero-inflation, uniformity,
outliers) and its two plots (the uniform Q-Q plot with the tests' results, the residuals against the
rank-transformed predictions with quantile lines).

The fit's model frame is needed (the design and the random-effects structure): a fit made in memory has it; a Dask
fit or a model loaded from a project does not, and is refused with a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.results import GlmmResult

if TYPE_CHECKING:
    from glmmlab.engine.inference import simulate as sim_engine

# the simulation engine and the plots are imported when residuals are first simulated or drawn: the fitted model
# imports this module (for DEFAULT_SEED), and a process that only fits need not hold them

DEFAULT_SEED = 123  # DHARMa's default: the same residuals every time unless a seed is given
MAX_SIMULATIONS = 10_000


class SimulatedResiduals:
    """DHARMa's scaled residuals of a fit, with the simulations' statistics for its tests.

    ``residuals`` (numpy, in the order of the fit's rows, ``rows`` their input row numbers), ``predicted`` (the
    population-level means the residuals are plotted against), ``n_sim``, ``seed``, ``conditional`` (whether the
    random effects were held at their fitted modes), ``simulated`` (the n x n_sim simulated responses, kept for up
    to five million values, else None)."""

    def __init__(self, simulation: sim_engine.Simulation, rows: np.ndarray, family: str, link: str,
                 response: str = "response"):
        self.simulation = simulation
        self.rows = np.asarray(rows)
        self.family = family
        self.link = link
        self.response = response

    @classmethod
    def from_simulations(cls, simulated: np.ndarray, observed: np.ndarray, fitted: np.ndarray,
                         seed: int | None = DEFAULT_SEED, integer: bool = False) -> "SimulatedResiduals":
        """Scaled residuals, tests and plots of simulations made elsewhere (DHARMa's ``createDHARMa``): an n x n_sim
        matrix of simulated responses, the n observed values and the n predicted means."""
        from glmmlab.engine.inference import simulate as sim_engine

        simulation = sim_engine.create(simulated, observed, fitted, seed=seed, integer=integer)
        return cls(simulation, np.arange(simulation.observed.shape[0]), "custom", "")

    # -- what the simulation gave ------------------------------------------------------------------------------
    @property
    def residuals(self) -> np.ndarray:
        return self.simulation.residuals

    @property
    def predicted(self) -> np.ndarray:
        return self.simulation.fitted

    @property
    def n_sim(self) -> int:
        return self.simulation.n_sim

    @property
    def seed(self) -> int | None:
        return self.simulation.seed

    @property
    def conditional(self) -> bool:
        return self.simulation.conditional

    @property
    def simulated(self) -> np.ndarray | None:
        return self.simulation.simulated

    def __len__(self) -> int:
        return int(self.residuals.shape[0])

    def __repr__(self) -> str:
        return (f"<SimulatedResiduals of a {self.family} fit: {len(self)} residuals from {self.n_sim} simulations "
                f"({'conditional on' if self.conditional else 'new draws of'} the random effects), seed "
                f"{self.seed}>")

    def series(self):
        """The residuals as a pandas Series indexed by input row (named ``scaled_residual``)."""
        import pandas as pd

        return pd.Series(self.residuals, index=pd.Index(self.rows, name="row"), name="scaled_residual")

    # -- DHARMa's tests ----------------------------------------------------------------------------------------
    def test_dispersion(self, alternative: str = "two.sided") -> sim_engine.ResidualTest:
        """DHARMa's ``testDispersion``: the variance of observed minus predicted against that of every simulation
        (statistic > 1: overdispersion, < 1: underdispersion) with a simulation p-value."""
        from glmmlab.engine.inference import simulate as sim_engine

        return sim_engine.dispersion_test(self.simulation, alternative)

    def test_zero_inflation(self, alternative: str = "two.sided") -> sim_engine.ResidualTest:
        """DHARMa's ``testZeroInflation``: the observed number of zeros against the simulated numbers (statistic
        > 1: more zeros than the model expects)."""
        from glmmlab.engine.inference import simulate as sim_engine

        return sim_engine.zero_inflation_test(self.simulation, alternative)

    def test_uniformity(self, alternative: str = "two.sided") -> sim_engine.ResidualTest:
        """DHARMa's ``testUniformity``: Kolmogorov-Smirnov of the residuals against U(0, 1)."""
        from glmmlab.engine.inference import simulate as sim_engine

        return sim_engine.uniformity_test(self.residuals, alternative)

    def test_outliers(self, alternative: str = "two.sided") -> sim_engine.ResidualTest:
        """DHARMa's ``testOutliers(type = "binomial")``: residuals outside every simulation against their
        expected frequency 2 / (n_sim + 1)."""
        from glmmlab.engine.inference import simulate as sim_engine

        return sim_engine.outlier_test(self.simulation, alternative)

    def tests(self) -> dict[str, sim_engine.ResidualTest]:
        """Every test, two-sided: ``uniformity``, ``dispersion``, ``zero_inflation``, ``outliers``."""
        return {"uniformity": self.test_uniformity(), "dispersion": self.test_dispersion(),
                "zero_inflation": self.test_zero_inflation(), "outliers": self.test_outliers()}

    def to_dict(self, residuals: bool = False) -> dict[str, Any]:
        """The settings and the tests as plain JSON values (``residuals=True`` adds the residuals with their input
        rows)."""
        out: dict[str, Any] = {"n_sim": self.n_sim, "seed": self.seed, "conditional": self.conditional,
                               "method": "PIT", "integer_response": self.simulation.integer,
                               "tests": {k: t.to_dict() for k, t in self.tests().items()}}
        if residuals:
            out["rows"] = [int(r) for r in self.rows]
            out["residuals"] = [float(r) for r in self.residuals]
        return out

    # -- DHARMa's plots ----------------------------------------------------------------------------------------
    def plot_qq(self, ax: Any = None, title: str | None = None):
        """The uniform Q-Q plot of the residuals with the tests' results in its corners (a matplotlib Figure; drawn
        into ``ax`` when given)."""
        from glmmlab.services.views import residual_plots

        return residual_plots.qq_uniform(self.residuals, self.tests(), ax=ax, title=title)

    def plot_vs_predicted(self, ax: Any = None, quantiles: tuple[float, ...] = (0.25, 0.5, 0.75),
                          title: str | None = None):
        """The residuals against the rank-transformed predictions, with the quantiles of the residuals along
        them (a matplotlib Figure; drawn into ``ax`` when given)."""
        from glmmlab.services.views import residual_plots

        return residual_plots.residuals_vs_predicted(self.residuals, self.predicted, quantiles=quantiles,
                                                     outliers=self.test_outliers(), ax=ax, title=title)

    def plot(self):
        """Both plots side by side (DHARMa's ``plot()``)."""
        from glmmlab.services.views import residual_plots

        return residual_plots.both(self)

    def quantile_deviations(self, quantiles: tuple[float, ...] = (0.25, 0.5, 0.75)) -> dict[str, Any]:
        """The quantile lines of :meth:`plot_vs_predicted` and their tests (see
        :func:`glmmlab.services.views.residual_plots.quantile_bins`)."""
        from glmmlab.services.views import residual_plots

        return residual_plots.quantile_bins(self.residuals, self.predicted, quantiles)


def simulate_residuals(result: GlmmResult, n_sim: int = 250, seed: int | None = DEFAULT_SEED,
                       conditional: bool = True) -> SimulatedResiduals:
    """DHARMa's scaled residuals of ``result``: ``n_sim`` responses simulated from the fit, with the random effects
    held at their fitted modes (``conditional=True``, the default: DHARMa's since 0.5.0) or drawn afresh from their
    estimated covariance (``conditional=False``, lme4's ``simulate(re.form = NA)``); ``seed`` makes them
    reproducible (None: fresh entropy)."""
    from glmmlab.engine.inference import simulate as sim_engine
    from glmmlab.engine.inference import simulate_models

    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or not 2 <= n_sim <= MAX_SIMULATIONS:
        raise GlmmInputError(f"n_sim must be a whole number from 2 to {MAX_SIMULATIONS:,} (got {n_sim!r}); DHARMa "
                             "uses 250")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise GlmmInputError(f"seed must be a whole number >= 0 or None (got {seed!r})")
    frame = result.model_frame()
    if frame is None:
        raise GlmmInputError("simulated residuals need the model's data: this fit keeps none (a Dask fit or a "
                             "model loaded from a project); fit it in memory with glmmlab.glmm or fit_glmm")
    inputs = simulate_models.row_inputs(result, frame)
    simulation = sim_engine.simulate(inputs, frame.y, n_sim=int(n_sim), seed=None if seed is None else int(seed),
                                     conditional=bool(conditional))
    return SimulatedResiduals(simulation, np.asarray(frame.rows), result.family, result.link,
                              str(result.model.get("response") or frame.response))
