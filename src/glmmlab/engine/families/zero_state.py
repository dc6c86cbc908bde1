"""The zero-inflation's mixture at a zero-inflated zero (one place for the row state and the mu-derivatives of
:class:`~glmmlab.engine.families.modelled.ModelledFamily`), and the row state of a zero-inflated count model under
the log link made in one pass (:class:`ZeroInflatedState`): the base's log f and mu-derivatives, the mixture at the
zero rows, the deviance and its first eta-derivative, with the second (the mode search's Newton weights), the third
and the moments when first read. On a small fit's rows a numpy call costs about as much as its arithmetic, so the
generic :class:`~glmmlab.engine.families.state.DensityState` over ``mu_core`` cost twice this state (salamanders'
128 distinct rows: ~50 -> ~25 us per state, three states per Laplace evaluation)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from glmmlab.engine.families.densities import _cube
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.families.state import DensityState
from glmmlab.engine.families.zero_model import zero_share

LOG = LINKS["log"]


def zi_mixture(fam: Any, resp, mu: np.ndarray, pieces: tuple, zero_model: tuple):
    """At a zero-inflated zero log f = log(p + (1 - p) f0); elsewhere log(1 - p) + log f(y | mu), the
    mu-derivatives unchanged. From the base's ``pieces`` (ll, l1, l2, l3 or None, info, var) and the zero model's
    kept pieces: (log f, d/dmu, a function giving d2/dmu2, a function giving (the expected information, Var(y)),
    d3/dmu3 or None); the mixture's shares are kept on the response for the gradient (``_zi_mix``)."""
    ll, l1, l2, l3, info, var = pieces
    log_1mp, one_m_p = zero_model[1], zero_model[2]
    zi = resp.zero_rows
    new_ll = ll + log_1mp
    lz, r = zero_share(zero_model, ll[zi])
    rr = r * (1.0 - r)
    new_ll[zi] = lz
    l1z, l2z = l1[zi], l2[zi]
    n1 = np.array(l1, dtype=float)
    n1[zi] = r * l1z
    resp._zi_mix = (fam, mu, (r, rr, l1z, l2z))

    def second() -> np.ndarray:
        n2 = np.array(l2, dtype=float)
        n2[zi] = r * l2z + rr * l1z * l1z
        return n2

    n3 = None
    if l3 is not None:
        n3 = np.array(l3, dtype=float)
        n3[zi] = r * l3[zi] + 3.0 * rr * l1z * l2z + rr * (1.0 - 2.0 * r) * _cube(l1z)

    def moments():
        mean = one_m_p * mu
        return info * one_m_p, one_m_p * (var + mu * mu) - mean * mean

    return new_ll, n1, second, moments, n3


class ZeroInflatedState(DensityState):
    """:class:`DensityState` of a zero-inflated count member (``fam``, a ModelledFamily of kind "zi") under the log
    link (h1 = h2 = mu), the same numbers made in one pass (see the module docstring)."""

    def __init__(self, fam: Any, resp, eta: np.ndarray):
        mu = LOG.linkinv(eta)
        # the member and the zero model's pieces, kept on the response for this member and zero-model offset (a
        # mode search's states share them; the joint Laplace moves the offset with the zero model's modes)
        context = getattr(resp, "_zi_context", None)
        zi_off = getattr(resp, "zi_off", None)
        if context is None or context[0] is not fam or context[1] is not zi_off or context[2] is not resp.y:
            context = (fam, zi_off, resp.y, fam.member(resp), fam._zero_model(resp))
            resp._zi_context = context
        zero_model = context[4]
        p = fam._new_pieces(resp, mu, None, context[3], zero_model)  # (count bases do not read q)
        new_ll, n1, self._second, self._moments, _ = zi_mixture(
            fam, resp, mu, (p["ll"], p["l1"], p["l2"], None, p["info"], p["var"]), zero_model)
        self._fam, self._resp = fam, resp
        self.eta, self.mu, self.h1, self.h2 = eta, mu, mu, mu
        self.dev = 2.0 * (resp.sat - new_ll)
        self.dev_eta = -2.0 * n1 * mu
        self._n1 = n1

    @cached_property
    def _third(self) -> tuple:  # type: ignore[override]
        # (DensityState's: what dev_eta2 and dev_eta3 read, the mixture's second derivative made when first read)
        return self._fam, self._resp, None, self._n1, self._second(), LOG
