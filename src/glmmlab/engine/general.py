"""Fitting general mixed models: any random-effects terms (slopes, several terms per factor, nested and crossed
factors), prior weights and offsets.

- Gaussian + identity: REML, profiled as lme4 does: for each theta the blocked factor of
  [Z Lambda, X, y]' W [Z Lambda, X, y] + diag(I, 0, 0) gives log det(H), log det(R_X'R_X) and the penalised
  residual sum of squares, so each evaluation costs no pass over the rows.
- Every other family and link: the Laplace approximation at the conditional modes, found by penalised IRLS
  (:mod:`glmmlab.engine.blocked` does the linear algebra), optimised jointly over (theta, beta).

The numbers follow lme4's conventions (see :mod:`glmmlab.engine.response` for the likelihood constants).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy import linalg, special

from glmmlab.engine import advice, inference
from glmmlab.engine.blocked import Structure, batched_inverse_lower, check_coupled_size, factor
from glmmlab.engine.design import check_not_constant, collinear_columns, gram_matrix, rank_deficient_warning
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families import Family, Link, dev_eta3, negbin_family, row_state
from glmmlab.engine.general_blocks import (
    MIN_BLOCK_ROWS,
    BlockedLaplace,
    BlockedProfiledLmm,
    BlockSet,
    centring_fit,
    cut_blocks,
    local_blocks,
    normal_equations,
    outer_factor,
    reml_criterion,
)
from glmmlab.engine.optimizer import feasible_theta, minimize, numeric_gradient, polish_value_only, stages_document
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.response import Response
from glmmlab.engine.terms import FactorBlock, ModelFrame, merge_terms
from glmmlab.engine.threads import cpu_count, one_blas_thread

if TYPE_CHECKING:
    from glmmlab.engine.results import GlmmResult

SINGULAR_THETA = 1e-4
# a mode whose linear predictor comes within this fraction of the scale of the row effects of the edge of the link's
# range (a mean of 0 under an identity link) is on that edge: see GeneralLaplace.pirls
EDGE_GAP = 1e-8
EDGE_STEPS = 3
# under such a link the mode search's curvature of a row with no observed curvature (y = 0 under the identity link):
# this fraction of the expected information, so the steps do not crawl towards the edge (see _edge_weights)
EDGE_CURVATURE = 1e-3
MAX_PREDICTED_STEP = 0.5  # largest change of a spherical mode that PIRLS starts from by prediction


# -- the fixed-effects design ------------------------------------------------------------------------------
WIDE_DESIGN_FLOPS = 2e9  # a design with n p^2 above this is worked through in chunks of rows, with progress


def scaled_design(X: np.ndarray, names: list[str], progress: ProgressFn = None
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """X_s = X[:, kept] T^-1 with X_s' X_s = n I, and T (beta = T gamma). Columns that are linear
    combinations of earlier ones are dropped (lme4 drops rank-deficient columns too), named in ``dropped``.

    By Cholesky QR: the collinearity test and T come from the Gram matrix X'X (equilibrated, so columns of any
    scale are alike); for a narrow design a second pass with the Gram matrix of the result makes X_s orthogonal
    to rounding (CholeskyQR2). Gram matrices and products, where a Householder QR of a tall design runs in one
    thread at a fraction of the speed (1M x 11: 0.07 s against 0.37 s). The columns kept have a residual on the
    earlier ones of at least 1e-5 of their norm, inside Cholesky QR's range. A wide design (n p^2 above
    WIDE_DESIGN_FLOPS: a factor of 1,500 levels) takes one pass, in chunks of rows with a progress report
    between them (where a cancel is seen); its columns are orthogonal to about 1e-6, which the fit does not need
    to be better. Should a factorisation fail, the design falls back to a Householder QR
    (:func:`design_scaling`)."""
    n, p = X.shape
    if p == 0:
        return X, np.zeros((0, 0)), [], []
    wide = n * p * p > WIDE_DESIGN_FLOPS
    G = gram_matrix(X, progress)
    out = set(collinear_columns(G, 0, progress=progress))
    keep = np.array([j for j in range(p) if j not in out], dtype=int)
    dropped = [names[j] for j in range(p) if j in out]
    kept = [names[j] for j in keep]
    Gk = G[np.ix_(keep, keep)]
    d = 1.0 / np.sqrt(np.maximum(np.diag(Gk), 1e-300))
    try:
        R = linalg.cholesky(Gk * d[:, None] * d[None, :], lower=False, check_finite=False)
        T = np.sqrt(n) * d[:, None] * linalg.solve_triangular(R, np.eye(keep.size), check_finite=False)
        Xs = _times(X if keep.size == p else X[:, keep], T, progress)
        for _ in range(0 if wide else 2):
            G2 = Xs.T @ Xs / n
            if np.max(np.abs(G2 - np.eye(keep.size))) <= 1e-12:
                break
            Ri = linalg.solve_triangular(linalg.cholesky(G2, lower=False, check_finite=False), np.eye(keep.size),
                                         check_finite=False)
            Xs = Xs @ Ri
            T = T @ Ri
        if np.all(np.isfinite(T)):
            return Xs, T, kept, dropped
    except (np.linalg.LinAlgError, ValueError):
        pass
    R = linalg.qr(X, mode="r", check_finite=False)[0]
    keep, T, kept, dropped = design_scaling(R, n, names)
    return X[:, keep] @ T, T, kept, dropped


def _times(X: np.ndarray, T: np.ndarray, progress: ProgressFn) -> np.ndarray:
    """X T, in chunks of rows with a progress report between them when it is large."""
    n, p = X.shape
    if n * p * T.shape[1] <= WIDE_DESIGN_FLOPS:
        return X @ T
    out = np.empty((n, T.shape[1]))
    rows = max(1, int(WIDE_DESIGN_FLOPS // max(p * T.shape[1], 1)))
    for a in range(0, n, rows):
        report(progress, "Preparing data: scaling the design", 0.0)
        np.matmul(X[a:a + rows], T, out=out[a:a + rows])
    return out


def design_scaling(A: np.ndarray, n: int, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """:func:`scaled_design`'s kept columns and T for an n-row X known only through a matrix A with
    A'A = X'X (X's R factor, or the stacked R factors of X's row blocks when X never meets in one place):
    (kept column indices, T, kept names, dropped names); X_s = X[:, kept] T. A column is dropped when it is a
    linear combination of the columns before it (the random-intercept engine's rule, and lme4's: the later
    of two collinear columns goes)."""
    p = A.shape[1]
    if p == 0:
        return np.zeros(0, dtype=int), np.zeros((0, 0)), [], []
    out = set(collinear_columns(A.T @ A, 0))
    keep = np.array([j for j in range(p) if j not in out], dtype=int)
    dropped = [names[j] for j in range(p) if j in out]
    Rk = linalg.qr(A[:, keep], mode="r", check_finite=False)[0][: keep.size]
    T = np.sqrt(n) * linalg.solve_triangular(Rk, np.eye(keep.size))
    return keep, T, [names[j] for j in keep], dropped


def design_dot(Xs: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """X_s beta in float64 (by pieces when X_s is stored in float32, as the Dask path's lean blocks hold it: no
    float64 copy of the design)."""
    if Xs.dtype == np.float64:
        return Xs @ beta
    out = np.empty(Xs.shape[0])
    for a in range(0, out.size, GLM_PIECE):
        np.matmul(Xs[a:a + GLM_PIECE], beta, out=out[a:a + GLM_PIECE])
    return out


def design_t_dot(Xs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """X_s' v in float64 (by pieces when X_s is stored in float32)."""
    if Xs.dtype == np.float64:
        return Xs.T @ v
    return sum((Xs[a:a + GLM_PIECE].T @ v[a:a + GLM_PIECE] for a in range(0, v.size, GLM_PIECE)),
               np.zeros(Xs.shape[1]))


def edge_gap(eta: np.ndarray, lo: float, hi: float) -> float:
    """The smallest distance of a row's linear predictor from an end of the open range (lo, hi) (inf without
    ends; negative when a row is outside)."""
    gap = np.inf
    if np.isfinite(lo):
        gap = min(gap, float(np.min(eta - lo, initial=np.inf)))
    if np.isfinite(hi):
        gap = min(gap, float(np.min(hi - eta, initial=np.inf)))
    return gap


def inside_start(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                 lk: Link) -> np.ndarray:
    """A start for the fixed effects inside the link's range. The GLM's maximum can lie on its edge (a Poisson
    mean of 0 under the identity link), where no random effect keeps every mean valid: the start is then moved a
    tenth of the way towards the coefficients whose linear predictor is closest to the constant
    link(mean of y), which lies well inside. Returns ``beta`` when it already keeps a hundredth of that
    distance from the edge."""
    if not fam.has_edge(lk, y):
        return beta
    return inside_start_of(beta, lk, fam.eta_range(lk, y), float(np.average(y, weights=pw)),
                           lambda c: np.linalg.lstsq(Xs, c - off, rcond=None)[0],
                           lambda b, lo, hi: edge_gap(Xs @ b + off, lo, hi))


def inside_start_of(beta: np.ndarray, lk: Link, eta_range: tuple[float, float], mean_y: float,
                    centre_of: Callable[[float], np.ndarray], gap: Callable[[np.ndarray, float, float], float]
                    ) -> np.ndarray:
    """:func:`inside_start` for a model with an edge from the link's range of linear predictors, the weighted
    mean of y, ``centre_of(c)``: the least-squares coefficients of the constant c less the offset, and ``gap(b,
    lo, hi)``: the rows' :func:`edge_gap` at coefficients b (rows that never meet in one place: the Dask path)."""
    lo, hi = eta_range
    with np.errstate(all="ignore"):
        c = float(lk.linkfun(np.array([mean_y]))[0])
    if not np.isfinite(c) or beta.size == 0:
        return beta
    centre = centre_of(c)
    margin = gap(centre, lo, hi)
    if not margin > 0 or gap(beta, lo, hi) >= 0.01 * margin:
        return beta
    return centre + 0.9 * (beta - centre)


# -- likelihood constants with prior weights ---------------------------------------------------------------
DISPERSION_MODES = ("estimated", "lme4")


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
        self.sat_rows = fam.saturated_rows(y, pw)
        self.sat = float(np.sum(self.sat_rows)) if self.sat_rows is not None else 0.0
        self.const = {"n": y.shape[0], "sum_w": float(np.sum(pw)), "sum_log_w": float(np.sum(np.log(pw[pw > 0]))),
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


# -- Gaussian + identity: profiled REML ---------------------------------------------------------------------
class ProfiledLmm:
    """The REML (or, with ``reml = False``, ML) criterion as a function of theta alone (beta and sigma profiled
    out), for the whole data or one block of whole outer groups (:class:`BlockedProfiledLmm` adds the blocks'
    :meth:`sums`). The cross-products of [Z, X_s, z - X_s beta0] are computed once; each theta costs one blocked
    factor of them (no pass over the rows). ``beta0``: a fit the response is centred on (see
    :func:`~glmmlab.engine.general_blocks.centring_fit`); the criterion does not depend on it."""

    def __init__(self, st: Structure, Xs: np.ndarray, z: np.ndarray, pw: np.ndarray,
                 beta0: np.ndarray | None = None):
        self.st, self.Xs, self.n, self.p = st, Xs, Xs.shape[0], Xs.shape[1]
        self.beta0 = np.zeros(self.p) if beta0 is None else np.asarray(beta0, dtype=float)
        if np.any(self.beta0 != 0.0):
            zc = Xs @ -self.beta0
            zc += z
        else:
            zc = z
        unit = bool(np.all(pw == 1.0))
        self.cp = st.crossprods_xz(pw, Xs, zc, unit=unit)
        self.sum_log_w = 0.0 if unit else sum_log(pw)
        self.evaluations = 0
        self.reml = True  # False: the maximum-likelihood criterion (lmer's REML = FALSE)

    def parts(self, theta: np.ndarray, reml: bool = True):
        """(criterion, factor, penalised RSS) at theta, this data alone."""
        F = factor(self.st, self.cp, np.asarray(theta, dtype=float))
        dev, pwrss = reml_criterion(F.logdet, F.SEE, self.n, self.sum_log_w, reml)
        return dev, F, pwrss

    def sums(self, theta: np.ndarray) -> dict:
        """This block's log det(Lambda' Z' W Z Lambda + I) and Schur complement of [X_s, z - X_s beta0]."""
        F = factor(self.st, self.cp, np.asarray(theta, dtype=float))
        return {"logdet": F.logdet, "SEE": F.SEE}

    def final(self, theta: np.ndarray, beta_s: np.ndarray) -> dict:
        """What the results need from this block at the optimum: the spherical modes u = H^-1 Lambda' Z' W
        (z - X_s beta), the diagonal blocks of H^-1 per level (conditional covariances over sigma^2), each row's
        random-effects contribution and X_s beta."""
        st, p = self.st, self.p
        F = factor(st, self.cp, np.asarray(theta, dtype=float))
        shift = np.asarray(beta_s, dtype=float) - self.beta0
        u = F.solve_u(p) - sum((F.solve_u(k) * shift[k] for k in range(p)), np.zeros(st.Q))
        re = st.row_effect(st.b_of_u(u, st.lambdas(theta)))
        return {"u": u, "cond": F.diag_blocks_inverse(st), "re": re, "xb": self.Xs @ beta_s}

    def varpar_deviance(self, theta: np.ndarray, sigma: float, reml: bool = True) -> float:
        """The deviance at (theta, sigma) without profiling sigma out (lmerTest's, for Satterthwaite's degrees of
        freedom): log det(L)^2 + pwrss / sigma^2 + n log(2 pi sigma^2) [+ log det(R_X)^2 - p log(2 pi sigma^2)]."""
        F = factor(self.st, self.cp, np.asarray(theta, dtype=float))
        R = linalg.cholesky(F.SEE, lower=True)
        p = self.p
        log2ps = np.log(2.0 * np.pi * sigma * sigma)
        dev = F.logdet + float(R[p, p] ** 2) / (sigma * sigma) + self.n * log2ps - self.sum_log_w
        if reml:
            dev += 2.0 * float(np.sum(np.log(np.diag(R)[:p]))) - p * log2ps
        return float(dev)

    def unscaled_vcov(self, theta: np.ndarray) -> np.ndarray:
        """(X' V(theta)^-1 X)^-1 for the scaled X: the fixed effects' covariance over sigma^2."""
        F = factor(self.st, self.cp, np.asarray(theta, dtype=float))
        return inference.inverse_spd(F.SEE[:self.p, :self.p])

    def value(self, theta: np.ndarray) -> float:
        self.evaluations += 1
        try:
            dev = self.parts(theta, self.reml)[0]
        except (np.linalg.LinAlgError, ValueError):
            return np.inf
        return dev if np.isfinite(dev) else np.inf


# -- every other family: Laplace ----------------------------------------------------------------------------
class GeneralLaplace:
    """lme4's Laplace deviance D(theta, beta) = -2 log p(y | mu) + |u|^2 + log det(H) at the conditional modes."""

    def __init__(self, st: Structure, Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray,
                 fam: Family, lk: Link, dispersion: str = "estimated", resp: Response | None = None):
        self.st, self.Xs, self.y, self.pw, self.off = st, Xs, y, pw, off
        self.dispersion = dispersion
        self.unit_weights = bool(np.all(pw == 1.0))  # then pw * a is a itself, and the product is skipped
        self.fam, self.lk = fam, lk
        self._set_edge()
        self.resp = Response(y, fam) if resp is None else resp  # ``resp``: the rows' part of the whole's
        self._lik: Likelihood | None = None
        self.nt = st.n_theta
        self.u = np.zeros(st.Q)
        self._last: dict | None = None  # what predicts the next modes (one grouping factor; see _predicted_modes)
        # False: nothing per row is kept between evaluations (then no predicted modes): the Dask path's lean blocks
        self.keep_last = True
        self._last_dev = 0.0
        self.evaluations = 0
        self.modes_converged = True
        # glmmTMB's Laplace approximation (the negative binomial, and a dispersion estimated with the other
        # parameters): the log-determinant uses the observed information (the exact Hessian of the joint
        # log-density) rather than the expected one
        self.observed = fam.observed_information or self.estimated

    @property
    def estimated(self) -> bool:
        """Whether the family's dispersion is a parameter of the model (see :class:`Likelihood`)."""
        return self.fam.has_dispersion and self.dispersion == "estimated"

    def set_family(self, fam: Family) -> None:
        """Use another member of the family (the negative binomial's theta)."""
        self.fam = fam
        self._set_edge()
        self.resp = Response(self.y, fam)
        self._lik = None

    @property
    def lik(self) -> Likelihood:
        """This block's likelihood constants, made when first needed: a fit over several blocks uses the whole
        data's (BlockedLaplace), and their saturated log-densities cost three log-gamma passes over the rows."""
        if self._lik is None:
            self._lik = Likelihood(self.fam, self.y, self.pw, self.dispersion)
        return self._lik

    def reset_modes(self) -> None:
        """Forget the last modes: the next mode search starts from u = 0."""
        self.u = np.zeros(self.st.Q)
        self._last = None

    def _set_edge(self) -> None:
        """The family's fast path (its means always valid) and, without it, the link's range of linear
        predictors when it has an end (``edge``: e.g. a Poisson or Gamma mean must stay above 0 under an identity
        link); the mode search then keeps every row inside that range."""
        self.fast = self.fam.has_fast_path(self.lk.name)
        self.eta_lo, self.eta_hi = self.fam.eta_range(self.lk, self.y)
        self.edge = not self.fast and self.fam.has_edge(self.lk, self.y)
        # Newton steps with the observed curvature in the mode search (see pirls): under a link with an edge, where
        # the dispersion is estimated, and under a link other than the family's canonical one (probit), where
        # the expected information's steps converge only linearly (three times the passes over the rows)
        self.newton = self.edge or self.estimated or self.lk.name != self.fam.canonical_link

    def _weighted(self, a: np.ndarray) -> np.ndarray:
        return a if self.unit_weights else self.pw * a

    def _xb(self, beta: np.ndarray) -> np.ndarray:
        return design_dot(self.Xs, beta)

    def _xt(self, v: np.ndarray) -> np.ndarray:
        return design_t_dot(self.Xs, v)

    def _state(self, eta_f: np.ndarray, u: np.ndarray, lams: list[np.ndarray]):
        re = self.st.row_effect(self.st.b_of_u(u, lams))
        rs = row_state(self.resp, eta_f + re, self.lk)
        pdev = float(np.sum(self._weighted(rs.dev))) + float(u @ u)
        # a family's fast path keeps its means in range (its has_fast_path promise): no check over the rows; under
        # a link with an edge the linear predictors stay inside its range (the side of a pole the data lie on)
        ok = np.isfinite(pdev) and (self.fast or bool(np.all(self.fam.mu_valid(rs.mu))))
        if ok and self.edge:
            ok = edge_gap(rs.eta, self.eta_lo, self.eta_hi) > 0
        return re, rs, (pdev if ok else np.inf)

    def pirls(self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray, max_iter: int = 200) -> dict:
        """The conditional modes u at (theta, beta) by penalised IRLS with step halving.

        Under a link whose linear predictors have an edge (``self.edge``) every step stays inside it (the
        feasible set of u is a polyhedron: a step is first cut to 0.9 of the way to the nearest row's edge),
        the steps use the observed curvature where the expected one would make them crawl (see
        :meth:`_edge_working`), and a mode that reaches the edge (a row with y = 0 whose mean is driven to 0)
        makes the point infeasible: the Laplace log-determinant, with the expected information 1 / mu of that
        row, is infinite there, so the deviance is +inf (``dev``) and the optimiser steps back."""
        st = self.st
        lams = st.lambdas(theta)
        eta_f = self._xb(beta) + self.off
        u = u0.copy()
        re, rs, pdev = self._state(eta_f, u, lams)
        for fallback in ((self.u,) if u0 is not self.u else ()) + (np.zeros(st.Q),):
            if np.isfinite(pdev):
                break
            u = fallback.copy()
            re, rs, pdev = self._state(eta_f, u, lams)
        if not np.isfinite(pdev) and self.edge:
            u = self._moved_in(eta_f, lams)
            re, rs, pdev = self._state(eta_f, u, lams)
        if not np.isfinite(pdev):
            raise FloatingPointError("no valid mean at the starting modes")
        cp = None
        converged = at_edge = False
        near = 0
        for _ in range(max_iter):
            # Newton steps with the observed curvature under a link with an edge and where glmmTMB's likelihood is
            # fitted (its log-determinant uses that curvature too): quadratic convergence, so the modes are at
            # rounding level when the steps stop (working-weight steps converge only linearly for a non-canonical
            # link, and left the fit depending on the cut into blocks at 1e-7)
            w, r = self._edge_working(rs, re) if self.newton else (self._weighted(rs.w),
                                                                  re + (self.y - rs.mu) / rs.h1)
            cp = st.crossprods(w, r[:, None])
            F = factor(st, cp, theta)
            delta = F.solve_u(0) - u
            if float(np.max(np.abs(delta), initial=0.0)) < 1e-10:
                converged = True
                break
            t = self._edge_step(eta_f + re, st.row_effect(st.b_of_u(delta, lams))) if self.edge else 1.0
            for _h in range(30):
                cand = u + t * delta
                re_c, rs_c, pdev_c = self._state(eta_f, cand, lams)
                if pdev_c <= pdev + 1e-12 * abs(pdev):
                    break
                t *= 0.5
            else:
                converged = True  # no descent left at rounding level
                break
            u, re, rs, pdev = cand, re_c, rs_c, pdev_c
            # a mode that stays at the edge for EDGE_STEPS steps in a row is on it (a start next to the edge
            # may touch it on the way)
            near = near + 1 if self.edge and self._at_edge(eta_f + re) else 0
            if near >= EDGE_STEPS:
                at_edge = True
                break
        else:
            cp = None
        fisher_again = self.newton and not self.estimated  # the last factor has the observed curvature
        if cp is None or self.edge or fisher_again:
            # the log-determinant, the gradient and the predicted modes use the expected information
            w = self._weighted(rs.w)
            with_r = self.edge or fisher_again
            cp = st.crossprods(w, (re + (self.y - rs.mu) / rs.h1)[:, None] if with_r else None)
            F = factor(st, cp, theta)
        if at_edge:
            self._last = None
            return {"u": u, "F": F, "rs": rs, "re": re, "dev": np.inf, "pdev": np.inf, "converged": False,
                    "logdet": np.inf, "F_ld": F, "cp_ld": cp, "at_edge": True}
        dev = float(np.sum(self._weighted(rs.dev)))
        self._last_dev = dev
        logdet, F_ld, cp_ld = F.logdet, F, cp
        if self.observed:
            cp_ld = st.crossprods(0.5 * self.pw * rs.dev_eta2, None)
            F_ld = factor(st, cp_ld, theta)
            logdet = F_ld.logdet
        if self.keep_last and not st.rest and converged and cp is not None and cp.E1.shape[2] == 1:
            # the score per level, Z' (pw (y - mu) h1 / V), from the last iteration's cross-products of the
            # working response r = Z Lambda u + (y - mu) / h1: Z'W r = A Lambda u + score
            score = cp.E1[:, :, 0] - np.einsum("jab,jb->ja", cp.A11, u.reshape(st.L1, st.q1) @ lams[0].T)
            self._last = {"theta": np.array(theta), "beta": np.array(beta), "u": u, "F": F, "w": w, "A": cp.A11,
                          "score": score, "lam": lams[0]}
        else:
            self._last = None
        return {"u": u, "F": F, "rs": rs, "re": re, "dev": dev, "pdev": pdev, "converged": converged,
                "logdet": logdet, "F_ld": F_ld, "cp_ld": cp_ld}

    def _edge_working(self, rs, re: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights and working response of a mode-search step under a link with an edge: a Newton step with the
        observed curvature (half the second derivative of the unit deviance) where it is positive, at least
        EDGE_CURVATURE of the expected information, and the expected information where the observed is
        negative. A row with y = 0 under the identity link has no observed curvature but an expected
        information 1 / mu that grows without bound near the edge: with it the steps would approach a mode on
        the edge ever more slowly (geometrically) instead of reaching it."""
        w = self._weighted(rs.w)
        wobs = 0.5 * self._weighted(rs.dev_eta2)
        wh = np.where(wobs >= 0.0, np.maximum(wobs, EDGE_CURVATURE * w), w)
        return wh, re - 0.5 * self._weighted(rs.dev_eta) / wh

    def _moved_in(self, eta_f: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """A start inside the link's range when u = 0 is outside it (the fixed part alone puts some row past the
        edge): each level of the leading factor with such a row moves along the first coordinate of its
        spherical effect whose rows all can be brought inside (row effects s * z_i' Lambda[:, k]: an interval of
        s per level), as far inside that interval as its end is from 0 (at least half a prior standard
        deviation; the middle of a narrower interval), as the random-intercept engine's start does.
        Deterministic in (theta, beta), so the modes, and the deviance, do not depend on the path of the
        optimiser. Levels that cannot be brought inside stay at 0."""
        st = self.st
        L1, q = st.L1, st.q1
        codes = st.codes1
        lo, hi = self.eta_lo, self.eta_hi
        bad = (eta_f <= lo) | (eta_f >= hi)
        todo = np.bincount(codes, weights=bad.astype(float), minlength=L1) > 0
        U = np.zeros((L1, q))
        for k in range(q):
            if not todo.any():
                break
            a = st.lead.Z @ lams[0][:, k]  # each row's effect per unit of the level's k-th coordinate
            s_lo, s_hi = np.full(L1, -np.inf), np.full(L1, np.inf)
            with np.errstate(all="ignore"):
                for end, sign in ((lo, 1.0), (hi, -1.0)):
                    if not np.isfinite(end):
                        continue
                    bound = (end - eta_f) / a  # eta_f + s a crosses the end at this s
                    up = sign * a > 0  # rows whose effect moves them away from this end as s grows
                    np.maximum.at(s_lo, codes[up], bound[up])
                    np.minimum.at(s_hi, codes[~up & (a != 0)], bound[~up & (a != 0)])
                    stuck = (a == 0) & (sign * (eta_f - end) <= 0)  # a row this coordinate cannot move
                    s_lo[np.unique(codes[stuck])] = np.inf
                ok = todo & (s_lo < s_hi)
                # as far inside again as the edge is from 0 (at least half a prior SD), or the middle of a
                # narrower interval: a row whose effect per unit is small still gets a margin
                margin = np.minimum(np.maximum(0.5, np.abs(np.where(np.isfinite(s_lo), s_lo, s_hi))),
                                    0.5 * (s_hi - s_lo))
                U[ok, k] = np.clip(0.0, s_lo + margin, s_hi - margin)[ok]
            todo &= ~ok
        u = np.zeros(st.Q)
        u[: L1 * q] = U.ravel()
        return u

    def _edge_step(self, eta: np.ndarray, d_eta: np.ndarray) -> float:
        """The first step length of a mode-search step that changes the linear predictor by ``d_eta``: 1, or 0.9
        of the way to where the first row reaches an end of the link's range."""
        t = 1.0
        if np.isfinite(self.eta_lo):
            m = d_eta < 0.0
            if m.any():
                t = min(t, 0.9 * float(np.min((eta[m] - self.eta_lo) / -d_eta[m])))
        if np.isfinite(self.eta_hi):
            m = d_eta > 0.0
            if m.any():
                t = min(t, 0.9 * float(np.min((self.eta_hi - eta[m]) / d_eta[m])))
        return t

    def _at_edge(self, eta: np.ndarray) -> bool:
        """Whether some row's linear predictor is within EDGE_GAP (relative to the largest |eta|) of an end of the
        link's range."""
        return edge_gap(eta, self.eta_lo, self.eta_hi) <= EDGE_GAP * (1.0 + float(np.max(np.abs(eta))))

    def _predicted_modes(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Starting modes for PIRLS at (theta, beta): the last modes moved along their derivative in (theta,
        beta) (the implicit function theorem with the last factor, one grouping factor), so PIRLS starts at an
        error of the order of the step squared and needs one Newton step less; otherwise the last modes."""
        last = self._last
        if last is None or last["theta"].shape != np.shape(theta) or last["beta"].shape != np.shape(beta):
            return self.u
        st = self.st
        L1, q = st.L1, st.q1
        lam, U = last["lam"], last["u"].reshape(L1, q)
        dlam = st.lead.lam(np.asarray(theta)[: st.n_theta]) - lam
        # d(Lambda' Z' score - u) = dLambda' score - Lambda' A dLambda u - Lambda' Z' W X dbeta
        rhs = last["score"] @ dlam - np.einsum("jab,jb->ja", last["A"], U @ dlam.T) @ lam
        dbeta = np.asarray(beta) - last["beta"]
        if np.any(dbeta != 0.0):
            xb = last["w"] * self._xb(dbeta)
            rhs -= st.lead_sums_z(xb)[0] @ lam
        du = last["F"].solve(rhs.ravel())
        # a long step (the optimiser's first iterations) is beyond the linearisation: start from the last modes
        step = float(np.max(np.abs(du), initial=0.0))
        return last["u"] + du if np.isfinite(step) and step <= MAX_PREDICTED_STEP else self.u

    def value_and_grad(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """D and its exact gradient, this block alone (the fit sums blocks with BlockedLaplace)."""
        D, p = self._total(params, True)
        if p is None:
            return np.inf, np.zeros_like(params)
        return D, self.lik.gradient(p["dev"], p["uu"], p["g_c"], p["g_0"], p.get("direct"))

    def value(self, params: np.ndarray) -> float:
        return self._total(params, False)[0]

    def _total(self, params: np.ndarray, gradient: bool) -> tuple[float, dict | None]:
        self.evaluations += 1
        try:
            p = self.parts(params[: self.nt], params[self.nt:], gradient)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf, None
        D = self.lik.data_term(p["dev"], p["uu"]) + p["logdet"]
        if not np.isfinite(D):
            return np.inf, None
        self.modes_converged = p["converged"]
        return float(D), p

    def parts(self, theta: np.ndarray, beta: np.ndarray, gradient: bool) -> dict:
        """This block's share of D and of its gradient (as c * g_c + g_0) at (theta, beta)."""
        m = self.pirls(theta, beta, self._predicted_modes(theta, beta))
        if m.get("at_edge"):  # an infeasible point: its modes are no start for the next one
            return {"dev": np.inf, "uu": 0.0, "logdet": np.inf, "converged": False}
        self.u = m["u"]
        out = {"dev": m["dev"], "uu": float(m["u"] @ m["u"]), "logdet": m["logdet"], "converged": m["converged"]}
        if gradient:
            out["g_c"], out["g_0"] = self._gradient_split(theta, m)
            if self.estimated:
                out["direct"] = self._direct_gradient(theta, m)
        return out

    def _direct_gradient(self, theta: np.ndarray, m: dict) -> np.ndarray:
        """The partial derivative of the weighted total deviance in (theta, beta) with the modes held fixed:
        over beta X_s' d1, over the theta entry at (ra, cb) of a factor's Lambda sum_i d1_i z_i[ra] u[cb] at the
        row's level (d1 = d dev / d eta per row)."""
        st = self.st
        d1 = self._weighted(m["rs"].dev_eta)
        us = st.split_u(m["u"])
        grad_theta = []
        for t, b in enumerate(st.blocks):
            if t == 0:
                G = st.lead_sums_z(d1)[0]
            else:
                codes = np.asarray(b.codes, dtype=np.intp)
                G = np.column_stack([np.bincount(codes, weights=d1 * b.Z[:, a], minlength=b.n_levels)
                                     for a in range(b.q)])
            grad_theta += [float(G[:, ra] @ us[t][:, cb]) for ra, cb in b.theta_positions()]
        return np.concatenate([np.array(grad_theta), self._xt(d1)])

    def agq(self, theta: np.ndarray, beta: np.ndarray, z: np.ndarray, wq: np.ndarray,
            phi: float | None = None) -> float:
        """Sum over this block's levels of log int p(y_j | u) phi(u) du by adaptive Gauss-Hermite quadrature
        (one scalar random-effects term): the rule (z, wq) for N(0, 1) centred on each level's mode and scaled by
        its conditional SD (the information the Laplace approximation uses, so one node gives the Laplace value).
        ``phi``: the dispersion where it is estimated (theta is then relative to sqrt(phi): the standard normal
        effect u has the mode v / sqrt(phi) for the modes v of the penalised deviance, and the same curvature
        1 + theta^2 W)."""
        st = self.st
        m = self.pirls(theta, beta, self.u)
        t = float(theta[0])
        rs = m["rs"]
        zc = st.lead.Z[:, 0]
        eta_f = self._xb(beta) + self.off
        if phi is not None:
            scale = float(np.sqrt(phi))

            def loglik(dev):
                return self.fam.loglik_rows(self.y, dev, phi, self.pw)
        else:
            scale, sat = 1.0, self.lik.sat_rows

            def loglik(dev):
                return sat - 0.5 * self.pw * dev
        if t == 0.0:
            return float(np.sum(loglik(rs.dev)))
        # one more Newton step puts the modes at rounding level (the quadrature is not stationary in them)
        F = m["F"]
        u = (F.solve_u(0) if F.G1.shape[2] else m["u"]) / scale
        info = 0.5 * self.pw * rs.dev_eta2 if self.observed else self.pw * rs.w
        W = st.lead_sum(info * zc * zc)
        sd = 1.0 / np.sqrt(1.0 + t * t * W)
        terms = np.empty((st.L1, z.size))
        logw = np.log(wq)
        for k, zk in enumerate(z):
            uk = u + sd * zk
            dev = row_state(self.resp, eta_f + (t * scale) * zc * st.lead_expand(uk), self.lk).dev
            terms[:, k] = logw[k] + st.lead_sum(loglik(dev)) - 0.5 * uk * uk + 0.5 * zk * zk
        value = float(np.sum(np.log(sd) + special.logsumexp(terms, axis=1)))
        return value if np.isfinite(value) else -np.inf

    def deviance_at_modes(self) -> float:
        """The weighted total deviance at the last modes found."""
        return self._last_dev

    def fixed_precision(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """X'WX - X'WZ Lambda H^-1 Lambda'Z'WX at the modes of (theta, beta), with the working weights."""
        m = self.pirls(theta, beta, self.u)
        self.u = m["u"]
        return factor(self.st, self.st.crossprods(self._weighted(m["rs"].w), self.Xs), theta).SEE

    def final(self, theta: np.ndarray, beta: np.ndarray) -> dict:
        """What the results need from this block at the optimum."""
        st = self.st
        m = self.pirls(theta, beta, self.u)
        rs = m["rs"]
        w = self.pw * rs.w
        F = factor(st, st.crossprods(w, self.Xs), theta)
        # the conditional covariances of the modes: the inverse of the Hessian the log-determinant uses
        # (the observed information where glmmTMB's likelihood is fitted)
        cond = (m["F_ld"] if self.estimated else F).diag_blocks_inverse(st)
        return {"u": m["u"], "SEE": F.SEE, "cond": cond, **self._row_parts(m), "converged": m["converged"]}

    def final_rows(self, theta: np.ndarray, beta: np.ndarray) -> dict:
        """The per-row part of :meth:`final` alone, without its cross-products (the Dask path's actors compute
        their rows' results after the sums)."""
        return self._row_parts(self.pirls(theta, beta, self.u))

    def _row_parts(self, m: dict) -> dict:
        rs = m["rs"]
        return {"mu": rs.mu, "resid": self.y - rs.mu, "var": rs.var, "dev_rows": self.pw * rs.dev, "re": m["re"]}

    def _gradient_split(self, theta: np.ndarray, m: dict) -> tuple[np.ndarray, np.ndarray]:
        """The exact gradient of D through the implicit function theorem; every factor block enters through its
        rows' own levels."""
        st = self.st
        lams = st.lambdas(theta)
        u_blocks = st.split_u(m["u"])
        rs, pw, F = m["rs"], self.pw, m["F"]
        d1 = self._weighted(rs.dev_eta)
        w_eta = self._weighted(rs.w_eta)
        wobs = 0.5 * self._weighted(rs.dev_eta2)
        w = self._weighted(rs.w)
        if self.observed:  # the log-determinant's weights are the observed information (negative binomial)
            F = m["F_ld"]
            w = wobs
            w_eta = 0.5 * pw * dev_eta3(self.fam, self.lk, self.y, rs)
        # |wobs - w| <= 1e-12 |w| (np.allclose's rule with rtol 1e-12, without its cost)
        canonical = bool(np.all(np.abs(wobs - w) <= 1e-12 * np.abs(w)))
        K = F if canonical else factor(st, st.crossprods(wobs, None), theta)
        if not st.rest:
            return self._gradient_one_factor(lams[0], m, F, K, d1, w_eta, wobs, m["cp_ld"].A11)
        n = self.Xs.shape[0]
        # per row: its scaled columns z~_it = Lambda_t' z_it for every factor, stacked (n, q_tot)
        codes = [np.asarray(b.codes, dtype=np.intp) for b in st.blocks]
        Zt = np.concatenate([b.Z @ L for b, L in zip(st.blocks, lams)], axis=1)
        qs = [b.q for b in st.blocks]
        starts = np.concatenate([[0], np.cumsum(qs)]).astype(int)
        P = self._row_inverse_blocks(F, codes, qs, starts, n)
        hz = np.einsum("nab,nb->na", P, Zt)  # (H^-1 z~_i) at the row's own levels
        s = np.einsum("na,na->n", Zt, hz)
        sw = s * w_eta
        # g_u = dD/du at the modes, scattered to each factor's levels
        # g_u = dD/du at the modes = 2 (1 - c) u + S, scattered to each factor's levels; the gradient is linear
        # in c, so it is returned as (g_c, g_0) with gradient = c g_c + g_0 (blocks add both up before c is known)
        pieces = []
        for t, b in enumerate(st.blocks):
            zt = Zt[:, starts[t]: starts[t + 1]]
            part = st.lead_sum(sw[:, None] * zt) if t == 0 else np.column_stack(
                [np.bincount(codes[t], weights=sw * zt[:, a], minlength=b.n_levels) for a in range(b.q)])
            pieces.append(part.ravel())
        S = np.concatenate(pieces)
        v0 = K.solve(2.0 * m["u"] + S)
        v1 = K.solve(-2.0 * m["u"])
        out = []
        for v, a_i in ((v1, d1), (v0, sw)):  # (c part, constant part)
            v_blocks = st.split_u(v)
            tv = np.zeros(n)
            for t in range(len(st.blocks)):
                vt_rows = st.lead_expand(v_blocks[t]) if t == 0 else v_blocks[t][codes[t]]
                tv += np.einsum("na,na->n", Zt[:, starts[t]: starts[t + 1]], vt_rows)
            a_i = a_i - wobs * tv
            grad_beta = self._xt(a_i)
            grad_theta = np.empty(self.nt)
            k = 0
            constant = v is v0
            for t, b in enumerate(st.blocks):
                Zr, vt = b.Z, v_blocks[t]
                ut = st.lead_expand(u_blocks[t]) if t == 0 else u_blocks[t][codes[t]]
                hzt = hz[:, starts[t]: starts[t + 1]]
                g = st.lead_sum(d1[:, None] * Zr) if t == 0 else np.column_stack(
                    [np.bincount(codes[t], weights=d1 * Zr[:, a], minlength=b.n_levels) for a in range(b.q)])
                for ra, cb in b.theta_positions():
                    val = float(np.sum(a_i * Zr[:, ra] * ut[:, cb]) - 0.5 * np.sum(vt[:, cb] * g[:, ra]))
                    if constant:
                        val += 2.0 * float(np.sum(w * Zr[:, ra] * hzt[:, cb]))
                    grad_theta[k] = val
                    k += 1
            out.append(np.concatenate([grad_theta, grad_beta]))
        return out[0], out[1]

    def _gradient_one_factor(self, lam: np.ndarray, m: dict, F, K, d1: np.ndarray, w_eta: np.ndarray,
                             wobs: np.ndarray, Aw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_gradient_split` for one grouping factor: every sum over rows that meets a per-level matrix is
        taken per level first (Aw = Z'WZ per level, from the factor's own cross-products), so the rows are
        passed over a few times instead of once per term and theta entry."""
        st = self.st
        L1, q = st.L1, st.q1
        U = m["u"].reshape(L1, q)
        Linv = batched_inverse_lower(F.L11)
        P = np.matmul(np.swapaxes(Linv, 1, 2), Linv)  # diagonal blocks of H^-1
        s = st.lead_quadratic(lam @ P @ lam.T)  # z~_i' H^-1 z~_i with z~ = Lambda' z
        sw = s * w_eta
        v1 = K.solve(-2.0 * m["u"])  # the c part needs no S: its row sums go with those of sw and d1
        a1 = d1 - wobs * st.lead_dot(v1.reshape(L1, q) @ lam.T)
        SZ, g, AZ1 = st.lead_sums_z(sw, d1, a1)
        S = SZ @ lam
        const = (Aw @ lam @ P).sum(axis=0)  # sum_j Aw_j Lambda P_j: the log-determinant's direct term
        tp = st.lead.theta_positions()
        out = []
        v0 = K.solve(2.0 * m["u"] + S.ravel())
        for v, a_i, constant in ((v1, a1, False), (v0, None, True)):
            V = v.reshape(L1, q)
            if a_i is None:
                a_i = sw - wobs * st.lead_dot(V @ lam.T)
                AZ = st.lead_sums_z(a_i)[0]
            else:
                AZ = AZ1
            grad_theta = np.array([float(AZ[:, ra] @ U[:, cb] - 0.5 * (V[:, cb] @ g[:, ra])) for ra, cb in tp])
            if constant:
                grad_theta += 2.0 * np.array([const[ra, cb] for ra, cb in tp])
            out.append(np.concatenate([grad_theta, self._xt(a_i)]))
        return out[0], out[1]

    def _row_inverse_blocks(self, F, codes, qs, starts, n) -> np.ndarray:
        """Per row, the q_tot x q_tot block of H^-1 at the row's own levels of every factor."""
        st = self.st
        H11, H12, H22 = F.inverse_parts()
        qt = int(starts[-1])
        P = np.empty((n, qt, qt))
        q1 = qs[0]
        P[:, :q1, :q1] = st.lead_expand(H11)
        if H12 is None:
            return P
        rows1 = codes[0][:, None] * q1 + np.arange(q1)[None, :]  # (n, q1) rows of H12
        cols = []
        for t, (b, o) in enumerate(zip(st.rest, st.rest_offsets), start=1):
            cols.append(o + codes[t][:, None] * b.q + np.arange(b.q)[None, :])
        for t, ct in enumerate(cols, start=1):
            s0, s1 = starts[t], starts[t + 1]
            blk = H12[rows1[:, :, None], ct[:, None, :]]
            P[:, :q1, s0:s1] = blk
            P[:, s0:s1, :q1] = np.swapaxes(blk, 1, 2)
            for t2, ct2 in enumerate(cols, start=1):
                P[:, s0:s1, starts[t2]: starts[t2 + 1]] = H22[ct[:, :, None], ct2[:, None, :]]
        return P


def negbin_glm(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, lk: Link
               ) -> tuple[np.ndarray, float, float]:
    """The negative binomial GLM: (coefficients, theta, -2 log-likelihood), theta by maximum likelihood."""
    return negbin_profile(lambda fam: glm_irls(Xs, y, pw, off, fam, lk),
                          lambda fam, dev: Likelihood(fam, y, pw).minus2(dev), float(np.mean(y)), float(np.var(y)))


def negbin_profile(glm: Callable[[Family], tuple[np.ndarray, float]], minus2: Callable[[Family, float], float],
                   mean: float, var: float) -> tuple[np.ndarray, float, float]:
    """:func:`negbin_glm` from ``glm(family)`` -> (coefficients, weighted deviance), ``minus2(family, deviance)``
    -> -2 log-likelihood, and the response's mean and variance (the start for theta)."""
    from scipy.optimize import minimize_scalar

    def profile(log_th: float):
        fam = negbin_family(np.exp(log_th))
        beta, dev = glm(fam)
        return minus2(fam, dev), beta

    start = np.log(mean * mean / (var - mean)) if var > mean * 1.01 else np.log(100.0)
    res = minimize_scalar(lambda t: profile(t)[0], bracket=(start - 1.0, start + 1.0),
                          options={"xtol": 1e-10})
    m2, beta = profile(float(res.x))
    return beta, float(np.exp(res.x)), float(m2)


def _wls(A: np.ndarray, c: np.ndarray, Xs: Callable[[], np.ndarray], z: Callable[[], np.ndarray],
         w: Callable[[], np.ndarray]) -> np.ndarray:
    """Weighted least squares on the scaled design from its normal equations A = X_s' W X_s, c = X_s' W z (X_s has
    orthogonal columns, so A is as well conditioned as the weights), by an SVD of the rows (``Xs``, ``z``,
    ``w``: callables giving them) when A is not positive definite."""
    try:
        return linalg.cho_solve(linalg.cho_factor(A), c)
    except (np.linalg.LinAlgError, ValueError):
        sw = np.sqrt(w())
        return np.linalg.lstsq(Xs() * sw[:, None], z() * sw, rcond=None)[0]


GLM_PIECE = 32_768  # rows per product in the GLM's normal equations


def row_chunks(n: int, n_chunks: int | None = None) -> list[slice]:
    """Contiguous runs of rows, one per core for a design of at least 2 * MIN_BLOCK_ROWS rows, for work that
    adds over rows and needs no whole groups (the GLM start)."""
    k = (cpu_count() if n >= 2 * MIN_BLOCK_ROWS else 1) if n_chunks is None else max(1, int(n_chunks))
    cuts = [n * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def glm_pass(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, resp: Response, fam: Family, lk: Link,
             beta: np.ndarray | None) -> tuple[float, bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass of the GLM's IRLS over some rows: (weighted deviance at ``beta``, whether every mean is valid,
    X'WX and X'Wz of the next step, w, z); ``beta`` None: the first step, from the family's starting means (no
    deviance). ``Xs`` may be float32 (the Dask path's lean blocks): the products are float64."""
    X = Xs
    if beta is None:  # the first step, from the family's starting means
        mu = fam.start_mu(y, lk.name)
        eta = lk.linkfun(mu)
        h1 = lk.mu_eta(eta)
        w = pw * h1 ** 2 / np.maximum(fam.variance(mu), 1e-300)
        z = eta - off + (y - mu) / h1
        dev, ok = np.nan, True
    else:
        xb = design_dot(X, beta)
        rs = row_state(resp, xb + off, lk)
        ok = bool(np.all(fam.mu_valid(rs.mu)))
        dev = float(np.sum(pw * rs.dev))
        w = pw * rs.w
        z = xb + (y - rs.mu) / rs.h1
    A = np.zeros((X.shape[1], X.shape[1]))
    for a in range(0, X.shape[0], GLM_PIECE):  # pieces that stay in cache: 2x faster than whole
        Xw = X[a:a + GLM_PIECE] * np.sqrt(w[a:a + GLM_PIECE])[:, None]
        A += Xw.T @ Xw
    return dev, ok, A, design_t_dot(X, w * z), w, z


def irls(passes: Callable[[np.ndarray | None], list], solve: Callable[[np.ndarray, np.ndarray, list], np.ndarray],
         max_iter: int = 100) -> tuple[np.ndarray, float]:
    """The GLM without random effects by IRLS with step halving, from passes over its blocks of rows:
    ``passes(beta)`` gives each block's :func:`glm_pass` (its first four entries at least), ``solve(A, c,
    parts)`` the coefficients of the normal equations A = X'WX, c = X'Wz. Returns (coefficients, weighted
    deviance). Each pass gives the deviance at the coefficients and the normal equations of the next step."""

    def normal_equations_at(beta: np.ndarray | None) -> tuple[float, bool, np.ndarray, np.ndarray]:
        parts = passes(beta)
        ok = all(p[1] for p in parts)
        dev = float(sum(p[0] for p in parts)) if ok else np.inf
        A, c = sum(p[2] for p in parts), sum(p[3] for p in parts)
        return dev, ok, solve(A, c, parts), A

    beta = normal_equations_at(None)[2]
    dev, _, new, _ = normal_equations_at(beta)
    for _ in range(max_iter):
        step = new - beta
        for _h in range(30):
            d_new, ok, new_next, _ = normal_equations_at(beta + step)
            if ok and d_new <= dev * (1 + 1e-12) + 1e-12:
                break
            step /= 2.0
        else:
            break
        done = abs(dev - d_new) <= 1e-12 * (abs(d_new) + 0.1)
        beta, dev, new = beta + step, d_new, new_next
        if done:
            break
    return beta, dev


def glm_irls(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, fam: Family, lk: Link,
             max_iter: int = 100, n_chunks: int | None = None, resp: Response | None = None
             ) -> tuple[np.ndarray, float]:
    """The GLM without random effects by IRLS with step halving (:func:`irls`): (coefficients, weighted
    deviance), each pass summed over runs of rows in threads; ``resp``: the response's per-row constants, when
    the caller has them."""
    chunks = BlockSet([(r, Response(y[r], fam) if resp is None else resp.part(r))
                       for r in row_chunks(y.size, n_chunks)])

    def passes(beta: np.ndarray | None) -> list:
        return chunks.map(lambda unit: glm_pass(Xs[unit[0]], y[unit[0]], pw[unit[0]], off[unit[0]], unit[1], fam,
                                                lk, beta))

    def solve(A: np.ndarray, c: np.ndarray, parts: list) -> np.ndarray:
        return _wls(A, c, lambda: Xs, lambda: np.concatenate([p[5] for p in parts]),
                    lambda: np.concatenate([p[4] for p in parts]))

    try:
        return irls(passes, solve, max_iter)
    finally:
        chunks.close()


# -- the driver ---------------------------------------------------------------------------------------------
def _check_nagq(blocks: list[FactorBlock], nagq: int) -> None:
    if nagq > 1 and not (len(blocks) == 1 and blocks[0].q == 1):
        raise GlmmInputError(
            "nagq > 1 (adaptive Gauss-Hermite quadrature) needs a model whose random effects are one scalar "
            "term such as (1 | g); this model has "
            + ", ".join(f"{b.q} effect(s) on {b.component}" for b in blocks)
            + ". Use nagq 1 (the Laplace approximation), as lme4 requires too"
        )


def _check_response_mean(mf: ModelFrame, fam: Family, lk: Link, pw: np.ndarray) -> None:
    """Refuse, in words, a response whose mean the link cannot give (a negative mean under the log link): the GLM
    that starts the fit has no start there, and a fit would run off to coefficients of -2,000."""
    if mf.n:
        mean = float(np.mean(mf.y)) if mf.weights is None else float(np.average(mf.y, weights=pw))
        check_response_mean(mean, fam, lk, mf.response)


def check_response_mean(mean: float, fam: Family, lk: Link, response: str) -> None:
    """:func:`_check_response_mean` from the response's weighted ``mean``."""
    with np.errstate(all="ignore"):
        c = float(lk.linkfun(np.array([mean]))[0])
    if not np.isfinite(c):
        raise GlmmInputError(
            f"the fit broke down numerically before it started: the {fam.name} family with the {lk.name} link "
            f"cannot give the response's mean ({mean:g} for '{response}'); choose another link (identity) or "
            "check the response")


def fit_frame(mf: ModelFrame, fam: Family, lk: Link, model: dict, *, se: str = "working",
              progress: ProgressFn = None, start: float | None = None, n_blocks: int | None = None,
              theta_start: np.ndarray | None = None) -> "GlmmResult":
    """Fit a general mixed model to a :class:`ModelFrame` (options already checked) and return its result.
    ``theta_start``: where the optimiser starts in theta (default lme4's: relative SDs 1, correlations 0)."""
    start = time.perf_counter() if start is None else start
    check_not_constant(mf.y, mf.response)
    blocks = merge_terms(mf.terms)
    _check_nagq(blocks, int(model.get("nagq", 1)))
    if model.get("nagq", 1) > 1 and fam.has_dispersion and model.get("dispersion", "estimated") == "lme4":
        raise GlmmInputError(
            f"nagq > 1 with the {fam.name} family needs the dispersion estimated with the other parameters "
            "(dispersion 'estimated', the default); lme4's criterion (dispersion 'lme4') is a Laplace one: use "
            "nagq 1 with it")
    n = mf.n
    pw = np.ones(n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
    off = np.zeros(n) if mf.offset is None else np.asarray(mf.offset, dtype=float)
    keep_rows = pw > 0
    if not np.all(keep_rows):
        raise GlmmInputError("weights must be positive for every row used; drop rows with weight 0 first")
    _check_response_mean(mf, fam, lk, pw)
    # rows sorted by outer group, then by the leading factor's levels: per-level work is contiguous and the rows
    # can be cut into blocks of whole outer groups (threads; see general_blocks). The frame is permuted before the
    # design is scaled, so the n x p design is gathered once.
    gaussian_identity = fam.name == "gaussian" and lk.name == "identity"
    if n_blocks is None:
        n_blocks = 1 if gaussian_identity else cpu_count() if n >= 2 * MIN_BLOCK_ROWS else 1
    perm: np.ndarray | None
    perm, specs = cut_blocks(blocks, max(1, int(n_blocks)))
    if not _is_identity(perm):
        mf = _permuted(mf, perm)
        pw = pw if mf.weights is None else np.take(pw, perm)
        off = off if mf.offset is None else np.take(off, perm)
        blocks = merge_terms(mf.terms)
    else:
        perm = None
    with one_blas_thread():  # BLAS threads on a tall, thin product cost more than they save (1M x 3: 30x)
        Xs, T, names, dropped = scaled_design(np.asarray(mf.X, dtype=float), list(mf.x_names), progress)
    warnings = list(mf.warnings)
    if dropped:
        warnings.append(rank_deficient_warning(dropped))
    st = Structure(blocks)
    st.start_at(theta_start)
    try:
        with np.errstate(all="ignore"), one_blas_thread():
            if fam.name == "gaussian" and lk.name == "identity":
                out = _fit_reml(st, Xs, T, names, mf, pw, off, model, progress, specs)
            else:
                out = _fit_laplace(st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, specs)
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        raise GlmmInputError(
            f"the fit broke down numerically ({exc}): the data may not suit the {fam.name} family with the "
            f"{lk.name} link, or the random-effects terms may ask more than the data can tell. Check the "
            "response and predictors, simplify the random effects, or try another link"
        ) from None
    out.warnings[:0] = warnings
    out.dropped = dropped
    if perm is not None:  # per-row results back in input order
        for name in ("rows", "fitted", "deviance_residuals", "pearson_residuals", "row_random_effect"):
            a = np.asarray(getattr(out, name))
            back = np.empty_like(a)
            back[perm] = a
            setattr(out, name, back)
    out.fit_seconds = time.perf_counter() - start
    report(progress, "Done", 1.0)
    return out


def _is_identity(perm: np.ndarray) -> bool:
    """Whether a permutation of 0..n-1 leaves every row where it is (strictly increasing), in one pass."""
    return perm.size < 2 or bool(np.all(perm[1:] > perm[:-1]))


def exact_gradient_ok(st: Structure) -> bool:
    """Whether the exact gradient is cheap: always for one grouping factor; with a coupled block it needs the
    dense (H^-1)_12, which costs (L1 q1) x Q2^2 operations per evaluation."""
    return not st.rest or st.L1 * st.q1 * st.Q2 * st.Q2 <= 2e9 and st.L1 * st.q1 * st.Q2 <= 5e7


def _permuted(mf: ModelFrame, perm: np.ndarray) -> ModelFrame:
    from dataclasses import replace

    from glmmlab.engine.terms import RandomTerm

    def take(a):  # np.take gathers rows of a matrix 2-3x faster than a[perm]
        return np.take(np.asarray(a), perm, axis=0)

    terms = [RandomTerm(t.component, take(t.codes), t.levels, take(t.Z), t.names, t.correlated) for t in mf.terms]
    return replace(mf, y=take(mf.y), X=take(mf.X), rows=take(mf.rows), terms=terms,
                   weights=None if mf.weights is None else take(mf.weights),
                   offset=None if mf.offset is None else take(mf.offset))


def _optimize(fun, x0, lower, model, progress, label, lo, hi, fun_grad=None, hessian=False, approx_hessian=None,
              handover=False):
    state = {"it": 0}

    def on_iter(k: int, f: float) -> None:
        state["it"] = k
        report(progress, f"{label} (iteration {k}, deviance {f:.4f})", lo + (hi - lo) * min(k / 30.0, 1.0))

    def counted(x):
        report(progress, f"{label} (iteration {state['it'] + 1})", lo + (hi - lo) * min(state["it"] / 30.0, 1.0))
        return fun(x)

    if fun_grad is not None:
        def counted_fg(x):
            report(progress, f"{label} (iteration {state['it'] + 1})",
                   lo + (hi - lo) * min(state["it"] / 30.0, 1.0))
            return fun_grad(x)

        return minimize(counted_fg, x0, lower, max_iter=model["max_iter"], tol=model["tol"], on_iteration=on_iter,
                        hessian=hessian, approx_hessian=approx_hessian, handover=handover)
    return minimize(numeric_gradient(counted, lower), x0, lower, max_iter=model["max_iter"], tol=model["tol"],
                    on_iteration=on_iter, polish_gtol=1e-8, hessian=hessian)


def _while_falling(fun, x: np.ndarray, f: float, move, plan) -> tuple[np.ndarray, float, float]:
    """Move ``x`` by ``move(x, c)`` with c = each factor of ``plan`` ((factor, at most how many times), ...) in
    turn, while ``fun`` falls; stop at the first factor that moved it. Returns (x, f, the product of the factors
    applied)."""
    scale = 1.0
    for factor_, times in plan:
        moved = False
        for _ in range(times):
            xt = move(x, factor_)
            ft = fun(xt)
            if not ft < f:
                break
            x, f, scale, moved = xt, ft, scale * factor_, True
        if moved:
            break
    return x, f, scale


def _scaled_start(fun, x0: np.ndarray) -> tuple[np.ndarray, float]:
    """A start for BOBYQA nearer the optimum than x0, by halving or doubling while the value falls: first x0 as
    a whole (at most six times), then each of its non-zero entries alone (at most four times each). Returns the
    start and the scale of the first move (BOBYQA's first steps are scaled by it)."""
    x, f_best, scale = _while_falling(fun, x0, fun(x0), lambda x, c: x * c, ((0.5, 6), (2.0, 6)))
    for i in np.flatnonzero(x != 0.0):
        def entry(x, c, i=i):
            xt = x.copy()
            xt[i] *= c
            return xt

        x, f_best, _ = _while_falling(fun, x, f_best, entry, ((0.5, 4), (2.0, 4)))
    return x, scale


def bobyqa(fun, x0: np.ndarray, lower: np.ndarray, model: dict, progress: ProgressFn, label: str, lo: float,
           hi: float, scale_start: bool = False):
    """Minimise a value-only function by BOBYQA (NLopt), the derivative-free optimiser lme4 uses for lmer;
    a profiled REML criterion over a few thetas needs some tens of evaluations with it.

    ``scale_start``: start from :func:`_scaled_start`'s point. From lme4's start (every relative SD 1) to
    InstEval's optimum (0.33, 0.51, 0.08) BOBYQA spent some 60 of its 114 evaluations; with the scan (about 10
    evaluations) the whole fit takes 60."""
    import nlopt

    from glmmlab.engine.optimizer import OptimizationRecord, bounds_list, log_step

    log: list[dict] = []
    best: dict[str, Any] = {"f": np.inf, "x": np.asarray(x0, dtype=float)}

    def objective(x, grad):
        k = len(log) + 1
        report(progress, f"{label} (evaluation {k})", lo + (hi - lo) * min(k / 100.0, 1.0))
        f = fun(np.asarray(x))
        f = float(f) if np.isfinite(f) else 1e300
        log_step(log, f, x, "bobyqa")
        if f < best["f"]:
            best["f"], best["x"] = f, np.array(x, dtype=float)
        return f

    scale, given = 1.0, np.asarray(x0, dtype=float)
    if scale_start and np.any(x0 != 0.0):
        x0, scale = _scaled_start(lambda x: objective(x, None), np.asarray(x0, dtype=float))
    k = x0.size
    opt = nlopt.opt(nlopt.LN_BOBYQA, k)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -1e300).tolist())
    opt.set_min_objective(objective)
    opt.set_ftol_abs(1e-12)
    opt.set_ftol_rel(1e-14)
    opt.set_xtol_abs(1e-10)
    max_eval = int(model["max_iter"]) * 10 * (1 + k)
    opt.set_maxeval(max_eval)
    opt.set_initial_step((scale * np.where(np.isfinite(lower) & (x0 <= lower + 1e-12), 0.5, 0.75)).tolist())
    try:
        x = np.asarray(opt.optimize(np.asarray(x0, dtype=float).tolist()))
        code = opt.last_optimize_result()
    except (nlopt.RoundoffLimited, RuntimeError):
        x, code = best["x"], nlopt.ROUNDOFF_LIMITED
    if best["f"] < fun(x):
        x = best["x"]
    converged = code > 0 and code != nlopt.MAXEVAL_REACHED
    message = "converged" if converged else (
        f"reached the maximum of {max_eval} evaluations" if code == nlopt.MAXEVAL_REACHED else f"NLopt code {code}")
    record = OptimizationRecord(x0=[float(v) for v in given], x=[float(v) for v in x], objective=float(best["f"]),
                                iterations=len(log), evaluations=len(log), converged=bool(converged),
                                message=message, log=log, optimizer="BOBYQA (NLopt)",
                                settings={"max_iter": int(model["max_iter"]), "max_evaluations": max_eval,
                                          "ftol_rel": 1e-14, "xtol_abs": 1e-10}, lower=bounds_list(lower))
    return x, record


def _fit_reml(st, Xs, T, names, mf, pw, off, model, progress, specs):
    report(progress, "Computing cross-products", 0.05)
    z = mf.y if mf.offset is None else mf.y - off
    beta0 = centring_fit(normal_equations(Xs, z, pw))
    blocks = [ProfiledLmm(local, Xs[r], z[r], pw[r], beta0) for local, r in _block_rows(st, specs)]
    obj = BlockedProfiledLmm(blocks, mf.n, sum_log(pw), beta0)
    obj.reml = reml = bool(model.get("reml", True))
    try:
        out = _reml_run(obj, specs, st, T, names, mf, pw, off, model, progress,
                        polish=outer_factor(st.blocks) is not None)
    finally:
        obj.close()
    p = Xs.shape[1]
    nt = st.n_theta
    theta = np.asarray(out.optimization["final"], dtype=float)
    whole: list = [blocks[0]] if len(blocks) == 1 else []

    def varpar_model() -> tuple:
        """(deviance, vcov, varpar) of Satterthwaite's method; the profiled criterion on all rows is built when
        first asked for (the fit's own blocks may be several)."""
        if not whole:
            whole.append(ProfiledLmm(st, Xs, z, pw, beta0))
        prof = whole[0]
        return (lambda vp: prof.varpar_deviance(vp[:nt], vp[nt], reml),
                lambda vp: vp[nt] ** 2 * (T @ prof.unscaled_vcov(vp[:nt]) @ T.T),
                np.append(theta, np.sqrt(out.var_residual)))

    if p:  # Satterthwaite's df of any combination of the fixed effects (omnibus F tests, marginal means)
        out.varpar_model = varpar_model
    if model.get("ddf", "none") == "satterthwaite" and p:
        report(progress, "Satterthwaite degrees of freedom", 0.95)
        out.df = inference.satterthwaite_df(*varpar_model())
    return out


def _block_rows(st: Structure, specs: list) -> list[tuple[Structure, slice]]:
    """Each block's structure on its local levels and its slice of the (sorted) rows."""
    if len(specs) == 1:
        check_coupled_size(st)
        return [(st, specs[0].rows)]
    ident = np.arange(st.n)
    out = [(Structure(local_blocks(st.blocks, ident, spec)), spec.rows) for spec in specs]
    for local, _ in out:
        check_coupled_size(local)
    return out


def _reml_run(obj, specs, st, T, names, mf, pw, off, model, progress, polish: bool = True,
              remote: "RemoteRows | None" = None):
    """Optimise the profiled REML (``obj.reml`` False: ML) criterion of ``obj`` (a BlockedProfiledLmm over threads
    or actors) and assemble the result: beta and its covariance from the summed Schur complement, the modes and
    conditional covariances from the blocks, put at their global levels. ``polish``: Newton steps after BOBYQA
    take theta to rounding level, so the fit does not depend on how the rows are cut into blocks (models whose
    factors nest; each evaluation is cheap there). ``remote``: the rows when they are not in ``mf`` (see
    :class:`RemoteRows`)."""
    reml = obj.reml
    lower = st.theta_lower()
    label = "Optimizing REML criterion" if reml else "Optimizing ML criterion"
    report(progress, label, 0.1)
    theta, record = bobyqa(obj.value, st.theta_start(), lower, model, progress, label, 0.1, 0.8, scale_start=True)
    if polish and record.converged:
        report(progress, f"{label} (Newton steps)", 0.8)
        theta, f, steps, evals = polish_value_only(obj.value, theta, lower, record.log)
        record.x, record.objective = [float(v) for v in theta], float(f)
        record.iterations += steps
        record.evaluations += evals
    theta = _onto_the_boundary(obj.value, theta, lower, record)
    record.stage = "REML" if reml else "ML"
    dev, SEE, pwrss = obj.criterion(theta)
    p = SEE.shape[0] - 1
    n = mf.n
    A = SEE[:p, :p]
    beta_s = obj.beta0 + linalg.solve(A, SEE[:p, p], assume_a="pos") if p else np.zeros(0)
    sigma2 = pwrss / (n - p) if reml else pwrss / n
    vcov_s = sigma2 * inference.inverse_spd(A) if p else np.zeros((0, 0))
    beta, vcov = T @ beta_s, T @ vcov_s @ T.T
    # the REML criterion depends on the parameterisation of X (reported for the original columns); ML's does not
    log_det_T = float(np.sum(np.log(np.abs(np.diag(linalg.qr(T)[1]))))) if p and reml else 0.0
    loglik = -0.5 * (dev - 2.0 * log_det_T)
    finals = obj.finals(theta, beta_s)
    us, conds = _at_global_levels(st, obj.units, specs, finals)
    lams = st.lambdas(theta)
    bs = [u @ L.T for u, L in zip(us, lams)]
    if remote is None:
        one = len(finals) == 1  # rows in block order
        rows = reml_rows({k: finals[0][k] if one else np.concatenate([f[k] for f in finals]) for k in ("re", "xb")},
                         mf.y, None if mf.weights is None else pw, None if mf.offset is None else off)
    else:
        rows = remote.rows(finals)
    cond = [sigma2 * c for c in conds]
    null_loglik = None
    if len(st.blocks) == 1 and st.q1 == 1:
        d0 = obj.criterion(np.zeros(st.n_theta))[0]
        null_loglik = -0.5 * (d0 - 2.0 * log_det_T)
    k = p + st.n_theta + 1
    return _assemble(st, mf, model, "REML" if reml else "ML", record.converged, theta, lams, sigma2, True, beta,
                     vcov, names, "X'V^-1X", loglik, k, bs, cond, rows, null_loglik, stages_document([record]), None,
                     sigma2)


def reml_rows(fin: dict, y: np.ndarray, pw: np.ndarray | None, off: np.ndarray | None) -> dict:
    """The per-row results of a linear mixed model from :meth:`ProfiledLmm.final`'s rows (``fin``: of one block,
    or of all blocks concatenated), the response, prior weights and offset (None: none): fitted values, residuals
    (times the square root of the weights: the deviance and the Pearson residuals, equal), random-effects
    contributions. ``fin["xb"]`` is not kept: the fitted values are made in it."""
    re = fin["re"]
    fitted = fin["xb"]
    fitted += re
    if off is not None:
        fitted += off
    resid = np.subtract(y, fitted)
    if pw is not None:
        resid *= np.sqrt(pw)
    return {"fitted": fitted, "deviance_residuals": resid, "pearson_residuals": resid.copy(),
            "group_random_effect": re}


def _onto_the_boundary(fun, theta: np.ndarray, lower: np.ndarray, record) -> np.ndarray:
    """theta with each SD the optimiser left just above its bound 0 (below 1e-3) set to 0 where the criterion
    there is no higher than at the optimum, to rounding (1e-10): a singular fit is then reported as exactly
    singular (variance 0, conditional SDs 0), as lme4 reports it, rather than with an SD of 1e-9 that only the
    optimiser's stopping rule put there."""
    theta = np.asarray(theta, dtype=float)
    f = fun(theta)
    for k in np.flatnonzero((lower == 0.0) & (theta > 0.0) & (theta < 1e-3)):
        trial = theta.copy()
        trial[k] = 0.0
        f_trial = fun(trial)
        if f_trial <= f + 1e-10 * max(1.0, abs(f)):
            theta, f = trial, f_trial
            record.x, record.objective = [float(v) for v in theta], float(f)
    return theta


def _at_global_levels(st: Structure, units: list, specs: list, finals: list[dict]
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The blocks' modes u and diagonal blocks of H^-1 (``finals``), put at their factors' global levels: one
    (levels, q) and one (levels, q, q) array per factor."""
    us = [np.zeros((b.n_levels, b.q)) for b in st.blocks]
    conds = [np.zeros((b.n_levels, b.q, b.q)) for b in st.blocks]
    for unit, spec, fin in zip(units, specs, finals):
        for t, (ub, cb) in enumerate(zip(unit.st.split_u(fin["u"]), fin["cond"])):
            us[t][spec.level_maps[t]] = ub
            conds[t][spec.level_maps[t]] = cb
    return us, conds


def _fit_laplace(st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, specs):
    report(progress, "Initial values (GLM)", 0.05)
    negbin = fam.parameter is not None  # a family with a parameter of its own (the negative binomial's theta)
    resp = None
    if negbin:
        beta0, nb0, glm_m2 = negbin_glm(Xs, mf.y, pw, off, lk)
        fam = negbin_family(nb0)
    else:
        resp = Response(mf.y, fam)  # the per-row constants once, sliced for the GLM's chunks and the blocks
        beta0, glm_dev = glm_irls(Xs, mf.y, pw, off, fam, lk, resp=resp)
    beta0 = inside_start(Xs, mf.y, pw, off, beta0, fam, lk)
    dispersion = model.get("dispersion", "estimated")
    laps = [GeneralLaplace(local, Xs[r], mf.y[r], pw[r], off[r], fam, lk, dispersion,
                           None if resp is None else resp.part(r))
            for local, r in _block_rows(st, specs)]
    obj = BlockedLaplace(laps, Likelihood(fam, mf.y, pw, dispersion), st.n_theta)
    try:
        return _laplace_run(obj, specs, st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, beta0,
                            nb0 if negbin else None, glm_m2 if negbin else None, None if negbin else glm_dev)
    finally:
        obj.close()


def cold_value(obj, x: np.ndarray, edge: bool, value=None) -> float:
    """The deviance reported at the estimates ``x`` (``value``: another function of the parameters than
    ``obj.value``). Under a link with an edge (``edge``) it is evaluated from cold modes (every block's modes
    reset to 0), so it is the objective at the estimates whatever point the optimiser evaluated last; elsewhere
    PIRLS from the last modes reaches the same modes to rounding level."""
    if edge:
        obj.reset_modes()
    return (obj.value if value is None else value)(x)


def _off_the_boundary(fun, x: np.ndarray, x0: np.ndarray, lower: np.ndarray, f: float) -> np.ndarray | None:
    """For a fit that ended with standard deviations (theta's diagonal entries) at their bound 0 (below 1e-8) though
    it started above it: the first of those SDs set back to 1/2, 1/10 or 1/100 of its start (the other parameters
    at the end point) whose deviance ``fun`` is lower than ``f``, or None (0 is then the lowest nearby)."""
    nt = lower.size
    stuck = np.flatnonzero((lower == 0.0) & (x[:nt] < 1e-8) & (x0[:nt] > 1e-8))
    margin = 1e-6 * max(1.0, abs(f))
    for k in stuck:
        for c in (0.5, 0.1, 0.01):
            trial = x.copy()
            trial[k] = c * x0[k]
            if fun(trial) < f - margin:
                return trial
    return None


def moment_theta(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                 lk: Link, codes: np.ndarray, L: int, relative: bool) -> float:
    """A start for a random intercept's theta from the GLM fit ``beta``: the between-level variance of the levels'
    weighted mean working residuals less their average sampling variance (the method of moments on the link
    scale), as an SD, relative to sigma when ``relative`` (a dispersion estimated with the other parameters;
    otherwise sigma enters only the sampling variance). Kept within [0.1, 5]."""
    return moment_theta_of([moment_sums(Xs, y, pw, off, beta, fam, lk, codes, L)], Xs.shape[1], fam, relative)


def moment_sums(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                lk: Link, codes: np.ndarray, L: int) -> dict:
    """:func:`moment_theta`'s sums over rows holding whole levels (``codes`` into their L levels)."""
    rs = row_state(Response(y, fam), design_dot(Xs, beta) + off, lk)
    r = (y - rs.mu) / rs.h1
    w = pw * rs.w
    W = np.maximum(np.bincount(codes, weights=w, minlength=L), 1e-300)
    rbar = np.bincount(codes, weights=w * r, minlength=L) / W
    return {"n": y.size, "levels": L, "wr2": float(np.sum(w * r * r)), "rbar2": float(rbar @ rbar),
            "inv_W": float(np.sum(1.0 / W))}


def moment_theta_of(parts: list[dict], p: int, fam: Family, relative: bool) -> float:
    """:func:`moment_theta` from the :func:`moment_sums` of blocks of whole levels (p: the fixed effects)."""
    n, L = sum(s["n"] for s in parts), sum(s["levels"] for s in parts)
    phi = sum(s["wr2"] for s in parts) / max(n - p, 1) if fam.has_dispersion else 1.0
    tau2 = (sum(s["rbar2"] for s in parts) - phi * sum(s["inv_W"] for s in parts)) / L
    sd = np.sqrt(max(tau2, 0.0)) / (np.sqrt(phi) if relative and phi > 0 else 1.0)
    return float(min(max(sd, 0.1), 5.0)) if np.isfinite(sd) else 1.0


def _relative_theta_start(fun, theta0: np.ndarray) -> np.ndarray:
    """A start for theta relative to the residual SD: lme4's start (relative SDs 1) halved or doubled while the
    deviance at the GLM's coefficients falls (at most 10 halvings, 3 doublings). With a dispersion estimated,
    theta is the random effects' SD over sigma, which can be far from 1 (an SD of 0.03 on the linear predictor
    against a residual SD of 0.5); from 1 the modes of a link with a pole (the inverse) can cross it, and the
    optimiser then settles on another stationary point."""
    return _while_falling(fun, theta0, fun(theta0), lambda x, c: x * c, ((0.5, 10), (2.0, 3)))[0]


def laplace_rows(fin: dict, pw: np.ndarray) -> dict:
    """The per-row results of a Laplace or AGQ fit from :meth:`GeneralLaplace.final`'s rows (``fin``: of one
    block, or of all blocks concatenated) and the prior weights: fitted means, deviance and Pearson residuals,
    random-effects contributions."""
    resid = fin["resid"]
    return {"fitted": fin["mu"], "deviance_residuals": np.sign(resid) * np.sqrt(np.maximum(fin["dev_rows"], 0.0)),
            "pearson_residuals": resid * np.sqrt(pw / fin["var"]), "group_random_effect": fin["re"]}


class RemoteRows(Protocol):
    """What :func:`_laplace_run` and :func:`_reml_run` ask of rows that are not in this process (the Dask path's
    actors, each holding a block of whole outer groups). Their blocks' ``final`` returns, besides the modes and
    covariances, its rows' sums (``dev_sum``, ``pearson2``, and ``extreme``: fitted probabilities at 0 or 1) and
    keeps their per-row results for :meth:`rows`."""

    def has_edge(self, fam: Family, lk: Link) -> bool:
        """:meth:`Family.has_edge` for the rows' response."""

    def likelihood(self, fam: Family) -> Likelihood:
        """The rows' :class:`Likelihood` for ``fam`` (a member of the family: the negative binomial's theta)."""

    def moment_theta(self, beta: np.ndarray, fam: Family, relative: bool) -> float:
        """:func:`moment_theta` at the GLM's coefficients ``beta``."""

    def rows(self, finals: list[dict]) -> dict:
        """The per-row results (``fitted``, ``deviance_residuals``, ``pearson_residuals``,
        ``group_random_effect``) of the blocks whose ``final`` gave ``finals``, in the order of the rows."""

    def separation(self, names: list[str], beta: np.ndarray, extreme: int) -> list[str]:
        """:func:`advice.separation_in_frame`'s warnings for the design columns ``names`` and their coefficients
        ``beta`` (NaN for a dropped one), with ``extreme`` fitted probabilities at 0 or 1."""


def _laplace_run(obj, specs, st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, beta0, nb0, glm_m2,
                 glm_dev, remote: "RemoteRows | None" = None):
    """Optimise the Laplace (and AGQ) deviance of ``obj`` (a BlockedLaplace over threads or actors) from the GLM's
    ``beta0`` and assemble the result. ``remote``: the rows when they are not in ``mf``, ``Xs``, ``pw`` and
    ``off`` (see :class:`RemoteRows`)."""
    negbin = nb0 is not None
    estimated = obj.lik.estimated  # a dispersion estimated with the other parameters (glmmTMB's likelihood)
    agq_phi = None
    nt = st.n_theta
    x0 = np.concatenate([st.theta_start(), beta0])
    lower = np.concatenate([st.theta_lower(), np.full(beta0.size, -np.inf)])
    scalar = not st.rest and st.q1 == 1 and st.ones1[0]  # one random intercept (1 | g)
    moments = scalar and st._start is None and (Xs.shape[0] == mf.n or remote is not None)
    if moments:
        x0[0] = moment_theta(Xs, mf.y, pw, off, beta0, fam, lk, st.codes1, st.L1, estimated) if remote is None \
            else remote.moment_theta(beta0, fam, estimated)
    edge = fam.has_edge(lk, mf.y) if remote is None else remote.has_edge(fam, lk)
    likelihood = (lambda f: Likelihood(f, mf.y, pw)) if remote is None else remote.likelihood  # noqa: E731
    if edge:
        x0[:nt] = feasible_theta(lambda th: obj.value(np.concatenate([th, x0[nt:]])), x0[:nt])
    if estimated and st._start is None and not moments:  # no start given (a refit starts at its fit's theta)
        tried = [0]

        def start_value(th):
            tried[0] += 1
            report(progress, f"Starting values (theta, evaluation {tried[0]})", 0.08)  # where a cancel is seen too
            return obj.value(np.concatenate([th, x0[nt:]]))

        x0[:nt] = _relative_theta_start(start_value, x0[:nt])
    report(progress, "Optimizing Laplace deviance", 0.1)
    if negbin:
        def nb_value(params):
            log_nb = float(params[-1])
            if not -20.0 < log_nb < 20.0:
                return np.inf
            f = negbin_family(np.exp(log_nb))
            obj.set_family(f, likelihood(f))
            return obj.value(params[:-1])

        def nb_value_grad(params):
            # exact over (theta, beta); a central difference over log theta_nb
            h = 1e-4
            fp = nb_value(np.append(params[:-1], params[-1] + h))
            fm = nb_value(np.append(params[:-1], params[-1] - h))
            nb_value(params)  # the family of this point
            f, g = obj.value_and_grad(params[:-1])
            return f, np.append(g, (fp - fm) / (2 * h) if np.isfinite(fp) and np.isfinite(fm) else 0.0)

        exact = all(exact_gradient_ok(lap.st) for lap in obj.laps)
        x, record = _optimize(nb_value, np.append(x0, np.log(nb0)), np.append(lower, -np.inf), model, progress,
                              "Optimizing Laplace deviance", 0.1, 0.8, hessian=(se == "hessian"),
                              fun_grad=nb_value_grad if exact else None)
        deviance = cold_value(obj, x, edge, nb_value)
        fam = obj.laps[0].fam
        x = x[:-1]
    else:
        exact = all(exact_gradient_ok(lap.st) for lap in obj.laps)

        def run(start):
            return _optimize(obj.value, start, lower, model, progress, "Optimizing Laplace deviance", 0.1, 0.8,
                             fun_grad=obj.value_and_grad if exact else None, hessian=(se == "hessian"),
                             approx_hessian=obj.approx_hessian if exact else None,
                             # without a dispersion c = d(-2 log p)/d(deviance) is 1, with one estimated
                             # (profiled) c = 1/phi: the approximate Hessian's fixed-effects block is then close
                             # to the true one and Newton steps finish (lme4's criterion keeps the old stop)
                             handover=estimated or not fam.has_dispersion)

        x, record = run(x0)
        deviance = cold_value(obj, x, edge)
        if glm_dev is not None and not edge \
                and obj.lik.data_term(glm_dev, 0.0) < deviance - 1e-6 * max(1.0, abs(deviance)):
            # The GLM (theta = 0, the boundary) beats the optimum reached from lme4's start: that was a local
            # optimum (lme4's Gamma criterion on a response far below its means), so the optimiser starts again
            # from the boundary and keeps the better of the two.
            x_b, record_b = run(np.concatenate([np.zeros(nt), beta0]))
            deviance_b = cold_value(obj, x_b, False)
            if deviance_b < deviance:
                x, record, deviance = x_b, record_b, deviance_b
        probe = _off_the_boundary(obj.value, x, x0, st.theta_lower(), deviance)
        if probe is not None:
            # The optimiser ended with an SD at 0 where the deviance, even in that SD, has zero slope: a first step
            # past the bound lands there whether or not it is the optimum (a bootstrap refit from the fit's theta).
            # A point with that SD back above 0 is lower, so the optimiser starts again from it.
            x_p, record_p = run(probe)
            deviance_p = cold_value(obj, x_p, edge)
            if deviance_p < deviance:
                x, record, deviance = x_p, record_p, deviance_p
    method = "Laplace"
    record.stage = "Laplace"
    records = [record]
    nagq = int(model.get("nagq", 1))
    if nagq > 1:
        from glmmlab.engine.quadrature import normal_nodes

        zq, wq = normal_nodes(nagq)
        # a parameter besides (theta, beta) on the log scale: the negative binomial's theta, or an estimated
        # dispersion (which the quadrature cannot profile out)
        extra = np.log(fam.parameter) if negbin else np.log(obj.lik.dispersion(*obj.dev_uu(x))) \
            if estimated else None

        def agq_value(params):
            phi = None
            if negbin:
                f = negbin_family(np.exp(params[-1]))
                obj.set_family(f, likelihood(f))
            elif estimated:
                phi = float(np.exp(params[-1]))
                if not np.isfinite(phi) or phi <= 0.0:
                    return np.inf
            if extra is not None:
                params = params[:-1]
            try:
                total = sum(obj.map(lambda lap: lap.agq(params[:nt], params[nt:], zq, wq, phi)))
            except (np.linalg.LinAlgError, FloatingPointError, ValueError):
                return np.inf
            return -2.0 * total if np.isfinite(total) else np.inf

        x_agq = np.append(x, extra) if extra is not None else x
        lower_agq = np.append(lower, -np.inf) if extra is not None else lower
        x_agq, record = _optimize(agq_value, x_agq, lower_agq, model, progress,
                                  f"Optimizing AGQ deviance, {nagq} nodes", 0.8, 0.85, hessian=(se == "hessian"))
        record.stage = f"AGQ ({nagq} nodes)"
        records.append(record)
        deviance = agq_value(x_agq)
        fam = obj.laps[0].fam
        x = x_agq[:-1] if extra is not None else x_agq
        agq_phi = float(np.exp(x_agq[-1])) if estimated else None
        method = "AGQ"
    theta, beta_s = x[:nt], x[nt:]
    report(progress, "Computing standard errors", 0.85)
    finals = obj.finals(theta, beta_s)
    us, conds = _at_global_levels(st, obj.laps, specs, finals)
    if remote is None:
        cat = lambda key: np.concatenate([f[key] for f in finals])  # noqa: E731  rows in block order
        mu, resid, var, dev_rows, re = cat("mu"), cat("resid"), cat("var"), cat("dev_rows"), cat("re")
        rows = laplace_rows({"mu": mu, "resid": resid, "var": var, "dev_rows": dev_rows, "re": re}, pw)
        dev_sum, pearson2 = float(np.sum(dev_rows)), float(rows["pearson_residuals"] @ rows["pearson_residuals"])
    else:
        rows = remote.rows(finals)
        dev_sum, pearson2 = sum(f["dev_sum"] for f in finals), sum(f["pearson2"] for f in finals)
    uu = float(sum(float(np.sum(u * u)) for u in us))
    sigma2, var_residual, scale2 = 1.0, None, 1.0
    if estimated:
        # the dispersion of the criterion (AGQ: its own estimate); theta is relative to sqrt(phi), so the random
        # effects' covariance on the linear-predictor scale is phi Lambda Lambda'
        sigma2 = agq_phi if agq_phi is not None else obj.lik.dispersion(dev_sum, uu)
        var_residual = scale2 = sigma2
    elif fam.has_dispersion:
        sigma2 = float((pearson2 + uu) / mf.n)
        var_residual = sigma2
    vcov_s = sigma2 * inference.inverse_spd(sum(f["SEE"] for f in finals))
    beta, vcov = T @ beta_s, T @ vcov_s @ T.T
    se_hessian = None
    if se == "hessian" and record.hessian is not None:
        cov_all = 2.0 * inference.inverse_spd(record.hessian)
        p_ = Xs.shape[1]
        se_hessian = np.sqrt(np.abs(np.diag(T @ cov_all[nt:nt + p_, nt:nt + p_] @ T.T)))
    loglik = -0.5 * deviance
    lams = st.lambdas(theta)
    bs = [u @ L.T for u, L in zip(us, lams)]
    cond = [sigma2 * c for c in conds]
    scalar = len(st.blocks) == 1 and st.q1 == 1
    if not scalar:
        null_loglik = None
    else:
        null_loglik = -0.5 * glm_m2 if negbin else -0.5 * obj.lik.data_term(glm_dev, 0.0)
    k = Xs.shape[1] + nt + (1 if (fam.has_dispersion or negbin) else 0)
    converged = record.converged and all(f["converged"] for f in finals)
    out = _assemble(st, mf, model, method, converged, theta, lams, scale2, False, beta, vcov, names,
                    "working weights at PIRLS convergence", loglik, k, bs, cond, rows, null_loglik,
                    stages_document(records), se_hessian, var_residual)
    out.warnings = advice.at_edge(out.warnings, fam.name, lk.name, edge, converged, False,
                                  model["max_iter"], model["tol"])
    if fam.bounded_mean:  # the binomial: signs of separation
        coef = dict(zip(names, beta))
        x_beta = np.array([coef.get(nm, np.nan) for nm in mf.x_names])
        out.warnings.extend(advice.separation_in_frame(list(mf.x_names), np.asarray(mf.X, dtype=float), mf.y,
                                                       x_beta, rows["fitted"]) if remote is None
                            else remote.separation(list(mf.x_names), x_beta, sum(f["extreme"] for f in finals)))
    if negbin:
        out.family_parameter = {"name": "theta", "value": float(fam.parameter)}
    return out


def _assemble(st: Structure, mf: ModelFrame, model: dict, method: str, converged: bool, theta: np.ndarray,
              lams: list[np.ndarray], scale2: float, reml: bool, beta, vcov, names, se_kind, loglik, k, bs, cond,
              rows, null_loglik, opt, se_hessian, var_residual):
    from glmmlab.engine.results import GlmmResult

    re_rows: list[dict[str, Any]] = []
    corr_rows: list[dict[str, Any]] = []
    blup_rows: list[dict[str, Any]] = []
    lead_blup = lead_se = np.zeros(0)
    for t, (blk, L, b, cv) in enumerate(zip(st.blocks, lams, bs, cond)):
        S = scale2 * (L @ L.T)
        M = np.einsum("ab,jbc,dc->jad", L, cv, L)  # conditional covariance of b per level
        for a, name in enumerate(blk.names):
            re_rows.append({"component": blk.component, "term": name, "variance": float(S[a, a])})
        for g in blk.groups:
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    a, c = g[i], g[j]
                    denom = np.sqrt(S[a, a] * S[c, c])
                    corr_rows.append({"component": blk.component, "term1": blk.names[a], "term2": blk.names[c],
                                      "correlation": float(S[a, c] / denom) if denom > 0 else None})
        sd = np.sqrt(np.maximum(np.diagonal(M, axis1=1, axis2=2), 0.0))
        if t == 0:  # the leading factor's first term: the random-intercept view (blup, blup_se)
            lead_blup, lead_se = np.array(b[:, 0], dtype=float), np.array(sd[:, 0], dtype=float)
        comp = blk.component
        for a, name in enumerate(blk.names):  # one comprehension per term over numbers already Python floats
            blup_rows.extend({"component": comp, "group": level, "term": name, "value": v, "std_error": e}
                             for level, v, e in zip(blk.levels, b[:, a].tolist(), sd[:, a].tolist()))
    diag = st.diagonal_theta(theta)
    singular = bool(np.any(diag < SINGULAR_THETA))
    warnings = []
    scalar = len(st.blocks) == 1 and st.q1 == 1
    if singular:
        warnings.append(advice.SINGULAR if scalar else advice.SINGULAR_GENERAL)
    if not converged:
        warnings.append(advice.not_converged(model["max_iter"], model["tol"]))
    lead = st.lead
    if lead.n_levels < 5:
        warnings.append(advice.few_groups(lead.n_levels))
    aic, bic = inference.information_criteria(loglik, k, mf.n)
    var_group = re_rows[0]["variance"]
    icc = inference.icc(model["family"], model["link"], var_group, var_residual) if scalar else None
    comparison = None
    if null_loglik is not None:
        comparison = inference.glm_comparison(loglik, null_loglik, k, mf.n, lead.n_levels, icc)
    return GlmmResult(
        model=model, method=method, n_obs=mf.n, n_groups=lead.n_levels, n_excluded=mf.n_input - mf.n,
        converged=bool(converged), singular=singular, warnings=warnings, names=list(names),
        beta=beta, vcov_matrix=vcov, se=np.sqrt(np.maximum(np.diag(vcov), 0.0)), se_kind=se_kind,
        var_group=float(var_group), var_residual=None if var_residual is None else float(var_residual),
        icc=icc, log_likelihood=float(loglik), log_likelihood_kind=method, aic=float(aic), bic=float(bic), k=int(k),
        group_labels=list(lead.levels), blup=lead_blup, blup_se=lead_se, rows=np.asarray(mf.rows),
        fitted=rows["fitted"], deviance_residuals=rows["deviance_residuals"],
        pearson_residuals=rows["pearson_residuals"], row_random_effect=rows["group_random_effect"],
        fit_seconds=0.0, theta=float(theta[0]), thetas=np.array(theta, dtype=float), glm_comparison=comparison,
        optimization=opt,
        se_hessian=se_hessian, re_rows=re_rows, correlations=corr_rows,
        groups={b.component: b.n_levels for b in st.blocks}, blup_rows=blup_rows,
    )
