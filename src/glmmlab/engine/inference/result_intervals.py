"""Confidence intervals of a fit (a mixin of :class:`~glmmlab.engine.inference.results.GlmmResult`):
``conf_int`` by Wald, likelihood profile or parametric bootstrap, and the checks that say which models each method
takes. Wald intervals come from the record alone; profile and bootstrap intervals refit the model's data, which
the fitted model of the services layer holds (:class:`glmmlab.services.modeling.fitted.FittedModel` overrides
``_refit_intervals`` and ``require_frame``)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.options import OPTIONS


def _needs_services(what: str) -> RuntimeError:
    return RuntimeError(f"{what} is computed by glmmlab's services: fit with glmmlab.glmm, fit_glmm or fit, whose "
                        "results carry it (an engine result holds the estimates only)")


def _checked(option: Any, value: Any, name: str) -> Any:
    """An option's value checked by its declared rule, the message naming the argument as it is named here."""
    try:
        return option.check(value)
    except GlmmInputError as exc:
        raise GlmmInputError(str(exc).replace(option.name, name, 1)) from None


class IntervalMethods:
    """The methods; the record's fields (names, beta, model, ...) are GlmmResult's."""

    names: list
    beta: Any
    model: dict
    ordinal: Any
    submodels: Any
    row_extras: Any
    structures: Any
    correlations: Any
    family_parameter: Any

    @property
    def family(self) -> str:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    @property
    def link(self) -> str:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    def intervals(self, conf_level: float | None = None) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def random_effects_table(self) -> list[dict]:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    def conf_int(self, level: float = 0.95, method: str = "wald", nsim: int = 1000, seed: int | None = None,
                 progress: Callable[[str, float], None] | None = None):
        """Confidence intervals at ``level``: a pandas DataFrame with columns ``lower`` and ``upper``.

        ``method``:
        - "wald": the fixed effects, estimate -/+ z * standard error;
        - "profile": likelihood-profile intervals (lme4's ``confint(method = "profile")``) of the random-effect
          standard deviations and correlations, ``sigma`` (Gaussian) and the fixed effects, named as lme4's
          ``oldNames = FALSE`` (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``);
        - "boot": parametric bootstrap percentile intervals of the same parameters (lme4's
          ``confint(method = "boot", nsim = nsim)``): ``nsim`` responses simulated from the fit, each refitted on
          every core; ``seed`` makes them reproducible whatever the number of processes. ``df.attrs`` holds
          ``nsim``, ``failed`` (refits that failed and were left out), ``seed`` and ``seconds``.

        ``progress(stage, fraction)`` is called as the profile or the bootstrap proceeds; raising
        :class:`glmmlab.FitCancelled` from it stops them. Profile and bootstrap need a fit made in memory
        (``glmmlab.glmm``/``fit_glmm``): they refit the model's data.
        """
        from glmmlab.engine.model.options import INTERVAL_OPTIONS

        method = _checked(INTERVAL_OPTIONS["ci"], method, "method")
        level = _checked(OPTIONS["conf_level"], level, "level")
        import pandas as pd

        attrs: dict = {"method": method, "level": level}
        if method != "wald" and self.ordinal is not None:
            raise GlmmInputError(f"method {method!r}: profile and bootstrap intervals are not available for ordinal "
                                 "models yet; use method='wald'")
        if method == "wald":
            names = list(self.names)
            lower, upper = self.intervals(level)
        else:
            if self.submodels or self.row_extras is not None:
                raise GlmmInputError(
                    f"{method} intervals are not available yet for a model with a zero or dispersion model (or a "
                    "hurdle family): use method='wald' (from the Hessian of the Laplace deviance, as glmmTMB's "
                    "confint)")
            self.require_frame(method)
            mapped = [e for e in self.structures if e["structure"] in ("cs", "ar1", "toep", "ou")]
            if mapped and method == "profile":  # a profile holds one of lme4's SDs or correlations, no parameter here
                e = mapped[0]
                raise GlmmInputError(
                    f"conf_int(method='profile') is not available for a model with a {e['structure']} covariance "
                    f"structure ({e['term']}) yet: use method 'boot' (the SDs and correlations it implies) or "
                    "'wald' (the fixed effects)")
            if method == "boot":
                nsim = _checked(INTERVAL_OPTIONS["nsim"], nsim, "nsim")
                if seed is not None:
                    seed = _checked(INTERVAL_OPTIONS["seed"], seed, "seed")
            names, lower, upper, notes = self._refit_intervals(method, level, nsim, seed, progress)
            attrs.update(notes)
        df = pd.DataFrame({"lower": np.asarray(lower, dtype=float), "upper": np.asarray(upper, dtype=float)},
                          index=pd.Index(list(names), name="term"))
        df.attrs.update(attrs)
        return df

    def _refit_intervals(self, method: str, level: float, nsim: int, seed: int | None,
                         progress: Callable[[str, float], None] | None) -> tuple[list[str], Any, Any, dict]:
        """(names, lower, upper, notes) of the "profile" and "boot" intervals, which refit the model: the fitted
        model of the services computes them."""
        raise _needs_services(f"conf_int(method={method!r})")

    def require_frame(self, what: str = "this") -> Any:
        """The fit's model frame (what profile and bootstrap intervals refit), or a GlmmInputError saying why
        there is none (the fitted model's)."""
        raise _needs_services(f"{what} intervals")

    def profile_arguments(self) -> dict:
        """What :func:`glmmlab.engine.solvers.profile.make_problem` needs to profile this fit (checked)."""
        from glmmlab.engine.families.catalogue import resolve

        if int(self.model.get("nagq", 1)) > 1:
            raise GlmmInputError("profile intervals use the Laplace deviance: refit with nagq 1, or use "
                                 "method='boot' for an AGQ fit")
        fam, lk = resolve(self.family, self.link)
        if fam.hessian_se:
            raise GlmmInputError(
                f"profile intervals are not available for the {fam.name} family: its own parameters ("
                f"{', '.join(fam.parameter_names)}) would have to be profiled with the others. Use method='wald' "
                "(from the Hessian, as glmmTMB's confint) or 'boot' (parametric bootstrap)")
        if fam.has_dispersion_parameter(lk) and self.model.get("dispersion") == "lme4":
            raise GlmmInputError(
                "profile intervals are not available for a fit of lme4's criterion (dispersion 'lme4'): that "
                "criterion is not a likelihood in sigma (lme4 computes sigma after the fit, and refuses to profile "
                "such models too). Refit with dispersion 'estimated' (the default) to profile, or use "
                "method='boot' (parametric bootstrap) or 'wald'")
        fp = None if self.family_parameter is None else self.family_parameter["value"]
        return {"mf": self.require_frame("profile"), "fam": fam, "lk": lk, "variances": self.random_effects_table(),
                "correlations": self.correlations or [],
                "beta": dict(zip(self.names, np.asarray(self.beta, dtype=float))), "family_parameter": fp}
