"""Covariance structures of a random-effects term: glmmTMB's ``us``, ``diag``, ``cs``, ``ar1``, ``toep`` and ``ou``.

A term's q effects per level have the relative covariance Lambda Lambda' (relative to the residual variance for a
linear mixed model, absolute otherwise). ``us`` is lme4's unstructured Lambda (theta = its lower triangle) and
``diag`` its diagonal (theta = the relative SDs, as ``(x || g)``); both are handled by the term's sub-blocks
(:class:`~glmmlab.engine.model.terms.FactorBlock`). The others are maps from a few parameters to Lambda, defined
here as :class:`CovStructure`:

    Lambda = D C,   D = diag(relative SDs),   C = chol(R(t)) with R the structure's correlation matrix

so Lambda is lower triangular and Lambda Lambda' = D R D. The parameters are the relative SDs (bounded below by
0, so a variance can reach 0 as in lme4) followed by unbounded correlation parameters t, on glmmTMB's scales:

- ``cs`` (heterogeneous compound symmetry): q SDs, one t; rho = plogis(t) (1 + a) - a, a = 1 / (q - 1), so rho
  lies in (-1 / (q - 1), 1) and R = (1 - rho) I + rho 11';
- ``ar1``: one SD for every column, one t; rho = t / sqrt(1 + t^2), R_ij = rho^|i - j| (i, j the column
  positions: equally spaced occasions);
- ``toep``: q SDs, q - 1 values t_k; rho_k = t_k / sqrt(1 + t_k^2), R_ij = rho_|i - j| (a point where R is not
  positive definite is infeasible);
- ``ou`` (continuous-time AR1, unequally spaced times s_1 < ... < s_q): one SD, one t; R_ij = exp(-|s_i - s_j| /
  range), range = exp(t); its ``rho`` is the correlation at a distance of one time unit, exp(-1 / range)
  (corr_ij = rho^|s_i - s_j|, so on equally spaced unit times ``ou`` is ``ar1`` with rho > 0).

:meth:`CovStructure.jacobian` gives dLambda / dparameter (the Cholesky factor's derivative, C Phi(C^-1 dR C^-T)
with Phi the lower triangle and half the diagonal), so an exact gradient in Lambda's entries becomes one in the
parameters by the chain rule (:mod:`glmmlab.engine.solvers.structured`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# the keywords of a formula's structured terms, with what each means (messages and documentation)
STRUCTURES: dict[str, str] = {
    "us": "unstructured (every variance and correlation; the same as a plain (x | g))",
    "diag": "diagonal (a variance per column, no correlation)",
    "cs": "compound symmetry (a variance per column, one common correlation)",
    "ar1": "first-order autoregressive (one variance, correlation rho^lag over equally spaced occasions)",
    "toep": "Toeplitz (a variance per column, one correlation per lag)",
    "ou": "continuous-time AR1 (Ornstein-Uhlenbeck: one variance, correlation exp(-distance / range))",
}
MAPPED = ("cs", "ar1", "toep", "ou")  # structures that are a map from their parameters to Lambda


class NotPositiveDefinite(ValueError):
    """A point of a structure's parameters whose correlation matrix is not positive definite (``toep``)."""


@dataclass(frozen=True)
class CovStructure:
    """One structured term of ``q`` columns: ``kind`` one of :data:`MAPPED`; ``times`` the ``ou`` times."""

    kind: str
    q: int
    times: tuple[float, ...] | None = None

    @property
    def n_sd(self) -> int:
        return 1 if self.kind in ("ar1", "ou") else self.q

    @property
    def n_cor(self) -> int:
        return self.q - 1 if self.kind == "toep" else 1

    @property
    def n_params(self) -> int:
        return self.n_sd + self.n_cor

    def lower(self) -> np.ndarray:
        """Bounds below: 0 for the relative SDs, -inf for the correlation parameters."""
        return np.concatenate([np.zeros(self.n_sd), np.full(self.n_cor, -np.inf)])

    def start(self) -> np.ndarray:
        """Relative SDs 1 and no correlation, as lme4's start of an unstructured term; ``ou`` starts with a weak
        one, a correlation of 0.05 between the two closest times (with a strong one the start's scan of the SD
        runs off towards a model without a residual, a local optimum)."""
        t = np.zeros(self.n_cor)
        if self.kind == "ou" and self.times is not None and len(self.times) > 1:
            gaps = np.diff(np.sort(np.asarray(self.times, dtype=float)))
            gap = float(np.min(gaps[gaps > 0])) if np.any(gaps > 0) else 1.0
            t[0] = np.log(gap / -np.log(0.05))
        return np.concatenate([np.ones(self.n_sd), t])

    def sds(self, phi: np.ndarray) -> np.ndarray:
        """The relative SD of every column."""
        s = np.asarray(phi, dtype=float)[: self.n_sd]
        return np.repeat(s, self.q) if self.n_sd == 1 else s.copy()

    def rho(self, phi: np.ndarray) -> np.ndarray:
        """The correlation parameters on their own scale: ``cs``/``ar1`` one rho, ``toep`` rho by lag 1 .. q - 1,
        ``ou`` the correlation at one time unit."""
        t = np.asarray(phi, dtype=float)[self.n_sd:]
        if self.kind == "cs":
            a = 1.0 / (self.q - 1)
            return 1.0 / (1.0 + np.exp(-t)) * (1.0 + a) - a
        if self.kind == "ou":
            return np.exp(-np.exp(-t))
        return t / np.sqrt(1.0 + t * t)

    def range(self, phi: np.ndarray) -> float | None:
        """``ou``: the range (the distance at which the correlation falls to 1/e); None for the others."""
        return float(np.exp(np.asarray(phi, dtype=float)[self.n_sd])) if self.kind == "ou" else None

    @cached_property
    def _lag(self) -> np.ndarray:
        i, j = np.indices((self.q, self.q))
        return np.abs(i - j)

    @cached_property
    def _lag_masks(self) -> list[np.ndarray]:
        """Per lag k = 1 .. q - 1, where |i - j| = k (1.0, else 0.0)."""
        return [(self._lag == k).astype(float) for k in range(1, self.q)]

    @cached_property
    def _lower(self) -> np.ndarray:
        return np.tri(self.q, dtype=bool)

    @cached_property
    def _eye_off(self) -> tuple[np.ndarray, np.ndarray]:
        """The identity and the indicator of the off-diagonal entries (cs)."""
        return np.eye(self.q), (self._lag > 0).astype(float)

    def _corr(self, t: np.ndarray, derivatives: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
        """R(t) and (``derivatives``) dR/dt_m for every correlation parameter."""
        q = self.q
        lag = self._lag
        if self.kind == "cs":
            a = 1.0 / (q - 1)
            p = 1.0 / (1.0 + np.exp(-t[0]))
            rho = p * (1.0 + a) - a
            eye, off = self._eye_off
            return eye + rho * off, [(1.0 + a) * p * (1.0 - p) * off]
        if self.kind == "ar1":
            rho = t[0] / np.sqrt(1.0 + t[0] * t[0])
            R = rho ** lag
            if not derivatives:
                return R, []
            drho = (1.0 + t[0] * t[0]) ** -1.5
            dR = np.where(lag > 0, lag * rho ** np.maximum(lag - 1, 0), 0.0) * drho
            return R, [dR]
        if self.kind == "toep":
            rhos = t / np.sqrt(1.0 + t * t)
            R = np.concatenate([[1.0], rhos])[lag]  # rho by lag, 1 on the diagonal
            if not derivatives:
                return R, []
            return R, [(1.0 + t[k - 1] ** 2) ** -1.5 * mask for k, mask in enumerate(self._lag_masks, start=1)]
        # ou: R = exp(-|s_i - s_j| / range), range = exp(t): dR/dt = R |ds| / range
        s = np.asarray(self.times, dtype=float)
        dist = np.abs(s[:, None] - s[None, :])
        scaled = dist * np.exp(-t[0])
        R = np.exp(-scaled)
        return R, [R * scaled]

    def factor(self, phi: np.ndarray) -> np.ndarray:
        """Lambda = D chol(R): the q x q lower-triangular relative factor. Raises :class:`NotPositiveDefinite`
        where R is not positive definite."""
        return self.factor_and_jacobian(phi, jacobian=False)[0]

    def factor_and_jacobian(self, phi: np.ndarray, jacobian: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
        """(Lambda, [dLambda / dphi_k for every parameter]) at ``phi``. With the Jacobian, the last point's answer is
        kept (read-only arrays): the Laplace gradient takes several gradients through it at one point."""
        phi = np.asarray(phi, dtype=float)
        if jacobian:
            key = phi.tobytes()
            last = self.__dict__.get("_last_jacobian")
            if last is not None and last[0] == key:
                return last[1], list(last[2])
            lam, dlams = self._factor_and_jacobian(phi, True)
            for a in (lam, *dlams):
                a.setflags(write=False)
            self.__dict__["_last_jacobian"] = (key, lam, dlams)  # a cache, not state: the dataclass stays frozen
            return lam, list(dlams)
        return self._factor_and_jacobian(phi, False)

    def _factor_and_jacobian(self, phi: np.ndarray, jacobian: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        R, dRs = self._corr(phi[self.n_sd:], jacobian)
        if self.kind == "ar1":  # its Cholesky factor in closed form: rho^(i - j), after column 1 times sqrt(1 - rho^2)
            t = float(phi[1])
            rho = t / math.sqrt(1.0 + t * t)  # self.rho(phi), as a number
            C = np.where(self._lower, R, 0.0)
            C[:, 1:] *= math.sqrt(1.0 - rho * rho)
            if not jacobian:  # one SD for every column
                return float(phi[0]) * C, []
            return float(phi[0]) * C, list(self._ar1_jacobian(C, float(phi[0]), t, rho))
        else:
            try:
                C = np.linalg.cholesky(R)
            except np.linalg.LinAlgError:
                raise NotPositiveDefinite(f"the {self.kind} correlation matrix is not positive definite") from None
        sd = self.sds(phi)
        lam = sd[:, None] * C
        if not jacobian:
            return lam, []
        return lam, list(self._jacobian(C, sd, dRs))

    def _ar1_jacobian(self, C: np.ndarray, sd: float, t: float, rho: float) -> np.ndarray:
        """ar1's dLambda / d(sd, t) in closed form: Lambda_ij = sd rho^(i - j) c_j (i >= j; c_0 = 1, c_j = sqrt(1 -
        rho^2) after), so dLambda / drho = sd (lag rho^(lag - 1) c_j + rho^lag dc_j / drho) and drho / dt =
        (1 + t^2)^-1.5: no inverse of C (the generic map's C Phi(C^-1 dR C^-T) costs two products and an inverse)."""
        q = self.q
        out = np.empty((2, q, q))
        out[0] = C
        c = math.sqrt(1.0 - rho * rho)
        lag = self._lag
        # lag rho^(lag - 1) on the lower triangle (0 on the diagonal), times each column's scale c_j
        d = np.where(self._lower & (lag > 0), lag * rho ** np.maximum(lag - 1, 0), 0.0)
        d[:, 1:] *= c
        d[:, 1:] -= (rho / c) * np.where(self._lower, rho ** lag, 0.0)[:, 1:]  # rho^lag dc_j / drho, c_j' = -rho / c
        out[1] = (sd * (1.0 + t * t) ** -1.5) * d
        return out

    def _jacobian(self, C: np.ndarray, sd: np.ndarray, dRs: list[np.ndarray]) -> np.ndarray:
        """dLambda / dphi_k stacked (n_params, q, q): the SDs' (rows of C), then the correlation parameters'
        (D C Phi(C^-1 dR C^-T), every one in one batched product)."""
        q = self.q
        out = np.zeros((self.n_params, q, q))
        if self.n_sd == 1:
            out[0] = C
        else:  # dLambda / dsd_k: row k of C
            out[np.arange(q), np.arange(q), :] = C
        if dRs:
            Cinv = np.linalg.inv(C)
            X = np.where(self._lower, Cinv @ np.stack(dRs) @ Cinv.T, 0.0)  # Phi: the lower triangle ...
            X[:, np.arange(q), np.arange(q)] *= 0.5  # ... and half the diagonal
            out[self.n_sd:] = sd[:, None] * (C @ X)
        return out

    def correlation(self, phi: np.ndarray) -> np.ndarray:
        """The implied correlation matrix R."""
        return self._corr(np.asarray(phi, dtype=float)[self.n_sd:])[0]
