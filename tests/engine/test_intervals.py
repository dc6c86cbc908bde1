"""Profile and bootstrap intervals (result.conf_int) against lme4's confint, stored with the R script that made
them (tests/reference/intervals/make_intervals.R).

Tolerances:
- profile: each bound within 1% of lme4's interval width (the issue's rule); we measure < 0.1%, since lme4
  interpolates a spline through its profile points where we solve for the roots.
- bootstrap (slow, nsim = 1000 as in R): each bound within 4 combined Monte Carlo standard errors of lme4's
  bound, sqrt(se_R^2 + se_ours^2), the standard error of a percentile being estimated from each run's own
  replicates (half the distance between the order statistics n p -/+ sqrt(n p (1 - p))). Two independent
  runs differ by more than 4 such errors with probability < 1e-4 per bound, if both estimate the same interval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.inference.intervals import percentile_interval
from glmmlab.engine.progress import FitCancelled
from glmmlab.services.modeling import bootstrap as boot
from tests.conftest import REFERENCE

ROOT = Path(__file__).resolve().parents[2]
REF = REFERENCE
INTERVALS = ROOT / "tests" / "reference" / "intervals"

CASES = {
    "sleepstudy_slope": ("models/sleepstudy_slope.csv", "Reaction ~ Days + (Days | Subject)", "gaussian"),
    "penicillin_crossed": ("models/penicillin_crossed.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", "gaussian"),
    "cbpp_binomial_logit": ("cbpp_binomial_logit.csv", "y ~ period2 + period3 + period4 + (1 | herd)", "binomial"),
    "cbpp_trials": ("models/cbpp_trials.csv", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    "binomial"),
    "contraception_slope": ("models/contraception_slope.csv",
                            "use ~ age + I(age^2) + urban + livch + (1 + urban | district)", "binomial"),
}


def _fit(case: str):
    path, formula, family = CASES[case]
    return glmmlab.glmm(formula, pd.read_csv(REF / path), family=family)


def _ref(case: str) -> dict:
    p = INTERVALS / f"{case}.json"
    if not p.exists():
        pytest.skip(f"no stored lme4 intervals for {case}")
    return json.loads(p.read_text())


@pytest.fixture(scope="module")
def sleep():
    return _fit("sleepstudy_slope")


# lme4 bounds that are broken, checked by the profile deviance instead (test_broken_lme4_bounds): (case, parameter,
# which bound). contraception_slope: lme4 1.1-31's upper bound of livch3+ (0.4477) lies below its own lower bound
# (0.5596); its profile of this model took 43 minutes and warned of a non-monotonic profile and a bobyqa stop.
BROKEN = {("contraception_slope", "livch3+", "upper")}


@pytest.mark.parametrize("case", list(CASES))
def test_profile_matches_lme4(case):
    ref = _ref(case)["profile"]
    ci = _fit(case).conf_int(method="profile")
    assert list(ci.index) == ref["names"]  # lme4's names (oldNames = FALSE) in lme4's order
    lo, up = np.array(ref["lower"], dtype=float), np.array(ref["upper"], dtype=float)
    broken_lo = np.array([(case, n, "lower") in BROKEN for n in ref["names"]])
    broken_up = np.array([(case, n, "upper") in BROKEN for n in ref["names"]])
    # a broken bound is checked by test_broken_lme4_bounds; the other bound of its row against our width
    width = np.where(broken_lo | broken_up, ci["upper"].to_numpy() - ci["lower"].to_numpy(), up - lo)
    np.testing.assert_array_less(np.abs(ci["lower"].to_numpy() - lo)[~broken_lo], 0.01 * width[~broken_lo])
    np.testing.assert_array_less(np.abs(ci["upper"].to_numpy() - up)[~broken_up], 0.01 * width[~broken_up])
    assert ci.attrs["method"] == "profile"


@pytest.mark.parametrize("case,name,side", sorted(BROKEN))
def test_broken_lme4_bounds(case, name, side):
    """Where lme4's bound is broken, the profile itself decides: the signed root deviance zeta is +/-1.96 at our
    bound (to 0.01), and lme4's bound is nowhere near it (the wrong side of the estimate here)."""
    from glmmlab.engine.solvers.profile import make_problem

    ref = _ref(case)["profile"]
    res = _fit(case)
    ci = res.conf_int(method="profile")
    problem = make_problem(**res.profile_arguments())
    k = problem.names.index(name)
    est = float(problem.estimate[k])

    def zeta(value: float) -> float:
        dev = problem.deviance(k, value, None)[0]
        return float(np.sign(value - est) * np.sqrt(max(dev - problem.base, 0.0)))

    target = 1.959964 if side == "upper" else -1.959964
    ours = float(ci.loc[name, side])
    lme4 = float(ref[side][ref["names"].index(name)])
    assert zeta(ours) == pytest.approx(target, abs=0.01)
    assert abs(zeta(lme4) - target) > 1.0, (lme4, zeta(lme4))


def test_lmm_profile_points_by_newton_equal_bobyquas(sleep):
    """A one-factor LMM's profile points by Newton steps on the stacked deviance (profile_lmm._BatchedPoints) give
    the bounds BOBYQA's points give, to 1e-7 of the interval's width (measured: 3e-9)."""
    from glmmlab.engine.solvers.profile import make_problem, profile_intervals

    newton = make_problem(**sleep.profile_arguments())
    assert newton.batched is not None  # sleepstudy's (Days | Subject) takes the Newton path
    bobyqa = make_problem(**sleep.profile_arguments())
    bobyqa.batched = None
    names, lo_n, up_n = profile_intervals(newton, 0.95)
    _, lo_b, up_b = profile_intervals(bobyqa, 0.95)
    width = up_b - lo_b
    assert names == list(sleep.conf_int(method="profile").index)
    np.testing.assert_array_less(np.abs(lo_n - lo_b), 1e-7 * width)
    np.testing.assert_array_less(np.abs(up_n - up_b), 1e-7 * width)


def test_newton_stops_where_its_stencil_leaves_the_domain():
    """newton_batched: a function whose stencil has a point where it is not finite (a profile point next to a
    bound) stops there, not converged (its caller then uses BOBYQA), instead of raising."""
    from glmmlab.engine.solvers.refit import newton_batched

    def fun(X, idx):
        return np.where(X[:, 0] <= 1.00001, (X[:, 0] - 2.0) ** 2, np.inf)

    with np.errstate(all="ignore"):
        x, f, ok = newton_batched(fun, np.array([[1.0]]), fused=True)
    assert not ok[0] and f[0] == 1.0 and x[0, 0] == 1.0


def test_profile_at_another_level_is_narrower(sleep):
    ci95 = sleep.conf_int(method="profile")
    ci80 = sleep.conf_int(0.80, method="profile")
    assert (ci80["lower"] > ci95["lower"]).all() and (ci80["upper"] < ci95["upper"]).all()


def test_profile_of_a_singular_fit_has_lower_bound_zero():
    d = pd.read_csv(REF / "dyestuff2_singular.csv")
    ref = json.loads((REF / "dyestuff2_singular.json").read_text())
    res = glmmlab.fit_glmm(d, response=ref["response"], group=ref["group"], fixed=ref["fixed"])
    ci = res.conf_int(method="profile")
    sd = [n for n in ci.index if n.startswith("sd_")][0]
    assert ci.loc[sd, "lower"] == 0.0 and ci.loc[sd, "upper"] > 0.0
    assert list(ci.index[-2:]) == ["sigma", "(Intercept)"]


def test_profile_of_lme4s_criterion_is_refused_with_the_reason():
    """lme4's criterion (dispersion 'lme4') has sigma computed after the fit, so nothing to profile it over (lme4
    refuses too); the default fit profiles sigma with the SDs (tests/engine/test_dispersion.py)."""
    d = pd.read_csv(REF / "sim_gamma_log.csv")
    ref = json.loads((REF / "sim_gamma_log.json").read_text())
    res = glmmlab.fit_glmm(d, response=ref["response"], group=ref["group"], fixed=ref["fixed"], family="gamma",
                           link="log", dispersion="lme4")
    with pytest.raises(glmmlab.GlmmInputError, match="not a likelihood in sigma.*dispersion 'estimated'.*'boot'"):
        res.conf_int(method="profile")


def test_wald_is_unchanged_and_fixed_effects_only(sleep):
    ci = sleep.conf_int()
    assert list(ci.index) == ["(Intercept)", "Days"]


# -- the bootstrap -------------------------------------------------------------------------------------------
def test_boot_names_and_reproducible_whatever_the_workers(sleep):
    one = boot.bootstrap(sleep, nsim=12, seed=7, workers=1)
    two = boot.bootstrap(sleep, nsim=12, seed=7, workers=2)
    assert one["names"] == ["sd_(Intercept)|Subject", "cor_Days.(Intercept)|Subject", "sd_Days|Subject", "sigma",
                            "(Intercept)", "Days"]
    np.testing.assert_array_equal(one["replicates"], two["replicates"])
    other = boot.bootstrap(sleep, nsim=12, seed=8, workers=1)
    assert not np.allclose(one["replicates"], other["replicates"])
    ci = sleep.conf_int(method="boot", nsim=12, seed=7)
    lo, up = percentile_interval(one["replicates"], 0.95)
    np.testing.assert_allclose(ci["lower"], lo)
    np.testing.assert_allclose(ci["upper"], up)
    assert ci.attrs["nsim"] == 12 and ci.attrs["failed"] == 0 and ci.attrs["seed"] == 7


def test_boot_reports_progress_and_can_be_cancelled(sleep):
    seen = []

    def progress(stage, fraction):
        seen.append(fraction)
        if fraction >= 0.3:
            raise FitCancelled()

    with pytest.raises(FitCancelled):
        boot.bootstrap(sleep, nsim=40, seed=1, progress=progress, workers=2)
    assert seen[0] == 0.0 and 0.3 <= seen[-1] < 1.0
    fractions = []
    boot.bootstrap(sleep, nsim=10, seed=1, progress=lambda s, f: fractions.append(f), workers=1)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_boot_counts_failed_refits(sleep, monkeypatch):
    import glmmlab.services.modeling.fitting as fitting

    real = fitting.fit_frame_spec
    calls = {"n": 0}

    def flaky(mf, spec, **kw):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise glmmlab.GlmmInputError("simulated failure")
        return real(mf, spec, **kw)

    monkeypatch.setattr(fitting, "fit_frame_spec", flaky)
    monkeypatch.setattr(boot, "refitter", lambda payload: None)  # every replicate by the ordinary fit
    run = boot.bootstrap(sleep, nsim=12, seed=3, workers=1)
    assert run["failed"] == 4 and np.isnan(run["replicates"]).all(axis=1).sum() == 4
    assert "simulated failure" in run["errors"][0]


def test_boot_replicates_the_fast_refit_gives_up_are_refitted_the_ordinary_way(sleep, monkeypatch):
    """A replicate the structure-keeping refit could not settle (None) is refitted by the ordinary fit, which
    reaches the same optimum."""
    whole = boot.bootstrap(sleep, nsim=12, seed=3, workers=1)
    real = boot.refitter

    class GivesUp:
        def __init__(self, payload):
            self.inner = real(payload)

        def refit_many(self, Y):
            got = self.inner.refit_many(Y)
            return [None if i % 3 == 0 else v for i, v in enumerate(got)]

    monkeypatch.setattr(boot, "refitter", GivesUp)
    run = boot.bootstrap(sleep, nsim=12, seed=3, workers=1)
    assert run["failed"] == 0
    np.testing.assert_allclose(run["replicates"], whole["replicates"], rtol=2e-4, atol=1e-6)


def test_percentile_rule_is_boot_ci_perc():
    # R: boot:::norm.inter(1:999 / 1000 ... ) -> with R = 999 and alpha = 0.025, (R + 1) alpha = 25: t[25]
    t = np.arange(1.0, 1000.0)[:, None]
    lo, up = percentile_interval(t, 0.95)
    assert lo[0] == 25.0 and up[0] == 975.0
    # R = 1000: (R + 1) 0.025 = 25.025, interpolated on the normal quantile scale between t[25] and t[26]
    t = np.arange(1.0, 1001.0)[:, None]
    lo, _ = percentile_interval(t, 0.95)
    assert 25.0 < lo[0] < 26.0


@pytest.mark.parametrize("family,pw,phi,param", [
    ("gaussian", 2.0, 4.0, None), ("binomial", 10.0, 1.0, None), ("poisson", 1.0, 1.0, None),
    ("gamma", 1.0, 0.5, None), ("negbin", 1.0, 1.0, 3.0),
])
def test_family_samplers_have_the_family_mean_and_variance(family, pw, phi, param):
    from glmmlab.engine.families.distributions import negbin_family

    fam = negbin_family(param) if param else FAMILIES[family]
    mu = np.full(200_000, 0.3 if family == "binomial" else 2.5)
    y = fam.sample(np.random.default_rng(1), mu, np.full(mu.size, pw), phi)
    var = phi * fam.variance(mu[0]) / (pw if family in ("gaussian", "binomial") else 1.0)
    assert abs(y.mean() - mu[0]) < 5 * math.sqrt(var / mu.size)
    assert abs(y.var() / var - 1.0) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sleepstudy_slope", "penicillin_crossed", "cbpp_binomial_logit"])
def test_boot_matches_lme4_within_monte_carlo_error(case):
    ref = _ref(case)
    if "boot" not in ref:
        pytest.skip("no stored bootstrap")
    rb = ref["boot"]
    res = _fit(case)
    run = boot.bootstrap(res, nsim=rb["nsim"], seed=20261129)
    assert run["names"] == rb["names"]
    lo, up = percentile_interval(run["replicates"], 0.95)
    t = run["replicates"]

    def qse(x, p):
        x = np.sort(x[np.isfinite(x)])
        n = x.size
        s = math.sqrt(n * p * (1 - p))
        return (x[min(n, math.ceil(n * p + s)) - 1] - x[max(1, math.floor(n * p - s)) - 1]) / 2

    for j, name in enumerate(rb["names"]):
        for ours, theirs, p, se_r in ((lo[j], rb["lower"][j], 0.025, rb["se_lower"][j]),
                                      (up[j], rb["upper"][j], 0.975, rb["se_upper"][j])):
            tol = 4.0 * math.hypot(se_r, qse(t[:, j], p))
            assert abs(ours - theirs) <= tol, (name, p, ours, theirs, tol)


def test_profile_in_parallel_processes_equals_the_serial_profile():
    from glmmlab.engine.solvers.profile import make_problem, profile_intervals
    from glmmlab.services.modeling import profiling

    res = _fit("cbpp_binomial_logit")
    names, lower, upper, notes = profiling.profile(res, 0.95, 0, None, None, workers=2)
    assert notes["workers"] == 2
    serial = profile_intervals(make_problem(**res.profile_arguments()), 0.95)
    assert names == serial[0]
    np.testing.assert_allclose(lower, serial[1], rtol=1e-9)
    np.testing.assert_allclose(upper, serial[2], rtol=1e-9)
