"""The per-row state the solvers work with at a linear predictor: mean, derivatives, working weights and unit
deviances, with fast paths for the canonical pairs (binomial logit, Poisson log) and probit."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from scipy import special

from glmmlab.engine.families.links import LINKS, Link

LOG_2PI = float(np.log(2.0 * np.pi))


LOG_SQRT_2PI = 0.5 * LOG_2PI


@dataclass
class RowState:
    """Row-level quantities at a linear predictor eta."""

    eta: np.ndarray
    mu: np.ndarray
    h1: np.ndarray  # dmu/deta
    h2: np.ndarray  # d2mu/deta2
    var: np.ndarray  # V(mu)
    dev: np.ndarray  # unit deviances
    dev_eta: np.ndarray  # d dev / d eta
    dev_eta2: np.ndarray  # d2 dev / d eta2 (observed)
    w: np.ndarray  # working (expected-information) weights h1^2 / V
    w_eta: np.ndarray  # dw / deta
    # d3 dev / d eta3 where the family computes it (glmmTMB's families); None: from the variance function
    # (families.distributions.dev_eta3)
    dev_eta3: np.ndarray | None = None
    # True where half of dev_eta2 is w itself, number for number (a canonical pair's fast path: binomial logit,
    # Poisson log), so the solvers need not compare them row by row
    observed_is_expected: ClassVar[bool] = False

    def dev_sum(self, pw: np.ndarray | None = None) -> float:
        """The sum of the unit deviances, weighted by ``pw`` (None: unit weights)."""
        return float(np.sum(self.dev if pw is None else pw * self.dev))


class _CanonicalState(RowState):
    """The row state of a canonical pair's fast path (binomial logit, Poisson log): the mean, weights and deviance
    computed at once, the deviance's derivatives that only the gradient reads (dev_eta = -2 (y - mu), dev_eta2 =
    2 var) when first read, so the states that PIRLS only tries (step candidates) cost less. The values are those
    of the same formulas computed eagerly."""

    observed_is_expected = True  # dev_eta2 / 2 = (2 var) / 2 = var = w exactly

    y: np.ndarray

    @cached_property
    def dev_eta(self) -> np.ndarray:  # type: ignore[override]
        return -2.0 * (self.y - self.mu)

    @cached_property
    def dev_eta2(self) -> np.ndarray:  # type: ignore[override]
        return 2.0 * self.var


class _LogitState(_CanonicalState):
    """The binomial logit's row state; h2 = w_eta, too, when first read. Its unit deviances are made when first
    read: the mode search's steps need only their sum (:meth:`dev_sum`)."""

    def __init__(self, resp, eta: np.ndarray, mu: np.ndarray, var: np.ndarray, d: np.ndarray, linear: float):
        self.y, self.eta, self.mu, self.h1, self.var, self.w = resp.y, eta, mu, var, var, var
        self._resp, self._d, self._linear = resp, d, linear

    @cached_property
    def dev(self) -> np.ndarray:  # type: ignore[override]
        # 2 (ylogy + log(1 + exp(-|eta|)) + max(eta, 0) - y eta), in place where it can be (fewer temporaries)
        dev = np.log(self._d)
        dev += np.maximum(self.eta, 0.0)
        if not _zero_ylogy(self._resp):
            dev += self._resp.ylogy
        dev -= self.y * self.eta
        dev *= 2.0
        return dev

    def dev_sum(self, pw: np.ndarray | None = None) -> float:
        if pw is not None or "dev" in self.__dict__:
            return super().dev_sum(pw)
        # the same sum by its parts: the log of a product is the sum of the logs, so 1 + exp(-|eta|) (in [1, 2])
        # multiplied over runs of LOG_RUN rows (at most 2^256) takes one log per run, not per row (a row state of
        # 125,000 rows 1.87 -> 1.24 ms); the sum of max(eta, 0) - y eta is one dot product (``linear``, made with
        # the means). Rounding: each product's is of the order of the rounding of its rows' 1 + exp(-|eta|), which
        # the per-row logarithms carry too (tests/engine/test_families.py)
        d = self._d
        whole = d.size - d.size % LOG_RUN
        logs = float(np.log(np.prod(d[:whole].reshape(-1, LOG_RUN), axis=1)).sum()) + float(np.log(d[whole:]).sum())
        resp = self._resp
        # (the response's constants summed once: every row state of a fit reads the same sum)
        ylogy = 0.0 if _zero_ylogy(resp) else kept_on(resp, "_ylogy_sum", (resp.ylogy,),
                                                     lambda: float(np.sum(resp.ylogy)))
        return 2.0 * (ylogy + logs + self._linear)

    @cached_property
    def h2(self) -> np.ndarray:  # type: ignore[override]
        return self.var * (1.0 - 2.0 * self.mu)

    @property
    def w_eta(self) -> np.ndarray:  # type: ignore[override]
        return self.h2


LOG_RUN = 256  # rows whose 1 + exp(-|eta|) are multiplied before one log (_LogitState.dev_sum)


def _zero_ylogy(resp) -> bool:
    """Whether the response's y log y constants are the number 0 (0/1 data)."""
    return np.isscalar(resp.ylogy) and resp.ylogy == 0.0


def _logit_state(resp, eta):
    # e = exp(-|eta|), d = 1 + e, mu = where(eta >= 0, 1, e) / d, var = max(mu (1 - mu), 1e-300); the deviance
    # 2 (ylogy + log(d) + max(eta, 0) - y eta) when first read (or its sum alone: _LogitState.dev_sum).
    # One exp per row: where(eta >= 0, 1, e) is max(eta >= 0, e) (e <= 1; the same numbers as exp(min(eta, 0)), a
    # second exp, gave), and log(1 + e) is log of d (log1p(e) costs twice a log here; the two differ by at most
    # 2e-16 per row, the rounding of d).
    e = np.abs(eta)
    np.negative(e, out=e)
    np.exp(e, out=e)
    d = e + 1.0
    mu = np.greater_equal(eta, 0.0).astype(float)  # 1 where eta >= 0, else 0
    # the sum of max(eta, 0) - y eta, as one dot product of terms that are all >= 0 for y in [0, 1] (the two sums
    # apart cancel where most rows are far on the side of their response)
    linear = float((mu - resp.y) @ eta)
    np.maximum(mu, e, out=mu)  # the numerator: 1 where eta >= 0, else e
    mu /= d
    var = 1.0 - mu
    var *= mu
    np.maximum(var, 1e-300, out=var)
    return _LogitState(resp, eta, mu, var, d, linear)


class _PoissonLogState(_CanonicalState):
    """The Poisson log's row state: h1 = h2 = var = w = w_eta = mu."""

    def __init__(self, y: np.ndarray, eta: np.ndarray, mu: np.ndarray, dev: np.ndarray):
        self.y, self.eta, self.mu, self.dev = y, eta, mu, dev
        self.h1 = self.h2 = self.var = self.w = self.w_eta = mu


def _poisson_log_state(resp, eta):
    y = resp.y
    mu = np.minimum(eta, 700.0)
    np.exp(mu, out=mu)
    dev = np.multiply(y, eta)  # pois_const + 2 (mu - y eta), as the eager formula groups it
    np.subtract(mu, dev, out=dev)
    dev *= 2.0
    np.add(resp.pois_const, dev, out=dev)
    return _PoissonLogState(y, eta, mu, dev)


def _probit_state(resp, eta):
    """Binomial-probit on the log scale: with the inverse Mills ratios l1 = phi/Phi(eta) and
    l0 = phi/Phi(-eta), everything stays finite far into the tails, where Phi itself rounds to 0 or 1."""
    y = resp.y
    log_p1 = special.log_ndtr(eta)
    log_p0 = special.log_ndtr(-eta)
    log_phi = -0.5 * eta * eta - LOG_SQRT_2PI
    l1 = np.exp(log_phi - log_p1)
    l0 = np.exp(log_phi - log_p0)
    mu = np.exp(log_p1)
    phi = np.exp(log_phi)
    w = l1 * np.exp(log_phi - log_p0)  # phi^2 / (Phi (1 - Phi)) = l1 * l0, without cancellation
    return RowState(
        eta=eta, mu=mu, h1=phi, h2=-eta * phi, var=np.maximum(mu * (1.0 - mu), 1e-300),
        dev=2.0 * (resp.ylogy - y * log_p1 - (1.0 - y) * log_p0),
        dev_eta=-2.0 * (y * l1 - (1.0 - y) * l0),
        dev_eta2=2.0 * (y * l1 * (eta + l1) + (1.0 - y) * l0 * (l0 - eta)),
        w=w, w_eta=w * (l0 - l1 - 2.0 * eta),
    )


class DensityState(RowState):
    """The row state of a ``DensityFamily`` member (glmmTMB's NB1, beta, beta-binomial, t): the deviance of a row
    is 2 (c - log f) and its eta derivatives follow from log f's mu derivatives l1, l2, l3 and the inverse link's
    h1, h2, h3. The third derivative (the gradient's) is computed when first read, so the states that PIRLS only
    tries cost less."""

    def __init__(self, fam: Any, resp, eta: np.ndarray, link: str):
        lk = LINKS[link]
        mu = lk.linkinv(eta)
        # the log link's derivatives are its inverse itself: the same array (as the Poisson log's fast state)
        h1 = mu if lk.mu_eta is lk.linkinv else lk.mu_eta(eta)
        h2 = mu if lk.mu_eta2 is lk.linkinv else lk.mu_eta2(eta)
        q = special.expit(-eta) if link == "logit" else 1.0 - mu
        ll, l1, l2, self._moments = fam.mu_core(resp, mu, q)
        self.eta, self.mu, self.h1, self.h2 = eta, mu, h1, h2
        self.dev = 2.0 * (resp.sat - ll)
        self.dev_eta = -2.0 * l1 * h1
        self._third = (fam, resp, q, l1, l2, lk)

    @cached_property
    def dev_eta2(self) -> np.ndarray:  # type: ignore[override]
        # when first read: a step's candidate that is not taken, and the model without random effects, need none
        _, _, _, l1, l2, _ = self._third
        return -2.0 * (l2 * self.h1 * self.h1 + l1 * self.h2)

    # the expected information and Var(y), when first read (the mode search's Newton steps and the gradient use
    # the observed information: the states they make need neither)
    @cached_property
    def _info_var(self) -> tuple[np.ndarray, np.ndarray]:
        return self._moments()

    @cached_property
    def var(self) -> np.ndarray:  # type: ignore[override]
        return self._info_var[1]

    @cached_property
    def w(self) -> np.ndarray:  # type: ignore[override]
        return self._info_var[0] * self.h1 * self.h1

    @cached_property
    def dev_eta3(self) -> np.ndarray:  # type: ignore[override]
        fam, resp, q, l1, l2, lk = self._third
        assert lk.mu_eta3 is not None  # every link these families offer has its third derivative
        h1, h2, h3 = self.h1, self.h2, lk.mu_eta3(self.eta)
        l3 = fam.mu_third(resp, self.mu, q)
        return -2.0 * (l3 * (h1 * h1 * h1) + 3.0 * l2 * h1 * h2 + l1 * h3)

    @property
    def w_eta(self) -> np.ndarray:  # type: ignore[override]
        return 0.5 * self.dev_eta3


def row_state(resp: Any, eta: np.ndarray, link: Link) -> RowState:
    """Means, weights and deviance derivatives at eta (the family's own fast path where it has one for this
    link: binomial logit and probit, Poisson log)."""
    family, y = resp.family, resp.y
    fast = family.fast_state(resp, eta, link.name)
    if fast is not None:
        return fast
    mu = link.linkinv(eta)
    h1 = link.mu_eta(eta)
    h2 = link.mu_eta2(eta)
    var = np.maximum(family.variance(mu), 1e-300)
    r = y - mu
    dev_mu = -2.0 * r / var
    dev_mu2 = 2.0 / var + 2.0 * r * family.variance_d1(mu) / (var * var)
    return RowState(
        eta=eta, mu=mu, h1=h1, h2=h2, var=var,
        dev=family.unit_deviance(y, mu),
        dev_eta=dev_mu * h1,
        dev_eta2=dev_mu2 * h1 * h1 + dev_mu * h2,
        w=h1 * h1 / var,
        w_eta=2.0 * h1 * h2 / var - h1 ** 3 * family.variance_d1(mu) / (var * var),
    )


def kept_on(resp, slot: str, keys: tuple, make):
    """``make()``, kept on the response in attribute ``slot`` while ``keys`` are the same objects (compared by
    identity: a member, the response's y, an offset): a mode search evaluates one member at many means, and what
    does not depend on them is made once."""
    kept = getattr(resp, slot, None)
    if kept is not None:
        for a, b in zip(kept[0], keys):  # (a loop: any() over a generator costs more on these few keys)
            if a is not b:
                break
        else:
            return kept[1]
    kept = (keys, make())
    setattr(resp, slot, kept)
    return kept[1]
