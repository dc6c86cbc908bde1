"""The likelihood's constants and its dispersion: glmmTMB's likelihood (the dispersion a parameter) or glmer's
(phi profiled from the Pearson statistic), from per-row sums that blocks can add."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.distributions import Family

# -- likelihood constants with prior weights ---------------------------------------------------------------


class Likelihood:
    """The data's part of the Laplace deviance, -2 log p(y | mu) + |u|^2, from the weighted total deviance ``dev``
    and |u|^2 ``uu`` at the modes, with prior weights (the weights of a binomial proportion are the trials;
    Gaussian weights are precisions).

    ``dispersion`` (families with a dispersion phi: Gamma, Gaussian with another link than the identity):
    - "estimated" (default): phi is a parameter of the model, as glmmTMB has it. The random effects' covariance
      is parameterised relative to phi (b = Lambda(theta) u sqrt(phi), as lme4 does for linear mixed models), so
      the joint log-density is -(dev + uu) / (2 phi) + K(phi)-terms: the modes do not depend on phi and the
      criterion (dev + uu) / phi + K(phi) + log det(H) is minimised over phi exactly for each (theta, beta)
      (:meth:`Family.dispersion_profile`); H uses the observed information.
    - "lme4": glmer's criterion: phi = dev / n plugged into the conditional density (lme4's conventions), |u|^2
      and the Fisher log-determinant as for a family without a dispersion; theta is then absolute.
    Families without a dispersion have one criterion, -2 log p(y | mu) + |u|^2, whatever ``dispersion`` says."""

    def __init__(self, fam: Family, y: np.ndarray, pw: np.ndarray, dispersion: str = "estimated",
                 const: dict | None = None):
        self.family = fam
        self.estimated = fam.has_dispersion and dispersion == "estimated"
        if self.estimated:  # K(phi) needs only these sums (``const``: the whole data's, from its blocks)
            self.disp = const if const is not None else fam.dispersion_constants(y, pw)
            return
        if const is not None:  # the whole data's sums, added up over its blocks (add_likelihood_sums)
            self.sat_rows, self.sat, self.const = None, float(const["sat"]), const
            return
        self.sat_rows = fam.saturated_rows(y, pw)  # a number where it is the same in every row (0/1 data)
        self.sat = float(np.sum(self.sat_rows)) if self.sat_rows is not None else 0.0
        # sum(log w) over the positive weights, without an n-row copy where they all are (all 1: no pass)
        log_w = sum_log(pw[pw > 0]) if bool(np.any(pw <= 0)) else sum_log(pw)
        self.const = {"n": y.shape[0], "sum_w": float(np.sum(pw)), "sum_log_w": log_w,
                      "sum_w_log_y": float(np.sum(pw * np.log(y))) if np.all(y > 0) else 0.0, "sat": self.sat}

    @classmethod
    def of_blocks(cls, fam: Family, parts: list[dict], dispersion: str = "estimated") -> "Likelihood":
        """The whole data's likelihood from its blocks' :func:`likelihood_sums` (rows that never meet in one
        place: the Dask path's actors)."""
        return cls(fam, np.zeros(0), np.zeros(0), dispersion, const=add_likelihood_sums(parts))

    def minus2(self, dev: float) -> float:
        """-2 log p(y | mu) given the weighted total deviance ``dev`` (lme4's convention for a dispersion)."""
        return float(self.family.minus2_loglik(dev, self.const)[0])

    def slope(self, dev: float) -> float:
        """d(-2 log p) / d(weighted total deviance) (lme4's convention for a dispersion)."""
        return float(self.family.minus2_loglik(dev, self.const)[1])

    def phi(self, dev: float) -> float:
        """lme4's dispersion for the likelihood (1 for families without one)."""
        return float(self.family.minus2_loglik(dev, self.const)[2])

    def data_term(self, dev: float, uu: float) -> float:
        """-2 log p(y | mu) + |u|^2 at the modes (phi profiled out where it is estimated)."""
        if self.estimated:
            return self.family.dispersion_profile(dev + uu, self.disp)[0]
        return self.minus2(dev) + uu

    def dispersion(self, dev: float, uu: float) -> float:
        """The dispersion phi at the modes: the profiled one where estimated, else lme4's (1 without one)."""
        if self.estimated:
            return self.family.dispersion_profile(dev + uu, self.disp)[1]
        return self.phi(dev) if self.family.has_dispersion else 1.0

    def gradient(self, dev: float, uu: float, g_c: np.ndarray, g_0: np.ndarray, direct) -> np.ndarray:
        """The gradient of the Laplace deviance from its blocks' parts: the total derivative of dev (``g_c``), of
        |u|^2 + log det(H) (``g_0``), and the partial derivative of dev at fixed modes (``direct``; only where
        phi is estimated). There the criterion is (dev + uu) / phi + K(phi) + log det(H) at the profiled phi,
        whose gradient is (dev + uu)' / phi + log det(H)' (phi's own derivative is 0 at its optimum); the modes
        make dev + uu stationary, so its total derivative is ``direct``, and log det(H)' = g_c + g_0 - direct."""
        if self.estimated:
            return g_c + g_0 + (1.0 / self.dispersion(dev, uu) - 1.0) * direct
        return self.slope(dev) * g_c + g_0

    def curvature(self, dev: float, uu: float) -> float:
        """c with the Hessian of the data term over beta ~ 2 c X' W X (the approximate Hessian's scale)."""
        if self.estimated:
            return 1.0 / self.dispersion(dev, uu)
        return self.slope(dev)


def likelihood_sums(fam: Family, y: np.ndarray, pw: np.ndarray, dispersion: str = "estimated") -> dict:
    """The sums over some rows that :class:`Likelihood` needs of the data (its constants, or K(phi)'s sums where
    the dispersion is estimated); :func:`add_likelihood_sums` adds those of several blocks of rows."""
    if fam.has_dispersion and dispersion == "estimated":
        return dict(fam.dispersion_constants(y, pw), positive=True)
    sat = fam.saturated_rows(y, pw)
    return {"n": y.shape[0], "sum_w": float(np.sum(pw)), "sum_log_w": float(np.sum(np.log(pw[pw > 0]))),
            "sum_w_log_y": float(np.sum(pw * np.log(y))) if np.all(y > 0) else 0.0,
            "sat": float(np.sum(sat)) if sat is not None else 0.0, "positive": bool(np.all(y > 0))}


def add_likelihood_sums(parts: list[dict]) -> dict:
    """The sums of :func:`likelihood_sums` of blocks of rows, as those of all their rows: numbers add up,
    sum(w log y) counts only when every y is positive, and the distinct prior weights with their counts (the
    Gamma family's K(phi)) are merged."""
    out: dict = {}
    for key in parts[0]:
        if key == "weights":
            w, inverse = np.unique(np.concatenate([p["weights"] for p in parts]), return_inverse=True)
            out["weights"] = w
            out["counts"] = np.bincount(inverse, weights=np.concatenate([p["counts"] for p in parts]),
                                        minlength=w.size)
        elif key == "positive":
            out[key] = all(p[key] for p in parts)
        elif key != "counts":
            out[key] = sum(p[key] for p in parts)
    if "sum_w_log_y" in out and not out["positive"]:
        out["sum_w_log_y"] = 0.0
    return out


def sum_log(pw: np.ndarray) -> float:
    """sum(log w) of prior weights (0 without a pass when they are all 1)."""
    return 0.0 if bool(np.all(pw == 1.0)) else float(np.sum(np.log(pw)))
