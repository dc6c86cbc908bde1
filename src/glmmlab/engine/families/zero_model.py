"""The zero model's per-row pieces of a :class:`~glmmlab.engine.families.modelled.ModelledFamily` (the mixin
:class:`ZeroModelRows`): the zero model's predictor z and p = plogis(z) kept per member, rows and zero-model offset,
the mixture's shares at a zero-inflated zero, and the derivatives of a row's log-density in z (first and second, the
cross derivative with the mean's predictor, and the third derivatives the joint Laplace of a zero model with random
effects needs: engine.solvers.joint_laplace).

At a zero-inflated zero log f = log(p + (1 - p) f0(mu)); with r = (1 - p) f0 / (p + (1 - p) f0), the count part's
share, dr/dz = -r (1 - r) and dr/d log f0 = r (1 - r). Elsewhere (a positive count, or any row of a hurdle, whose
zero model is separate from the count part) log f has log(1 - p) or log p, whose z-derivatives are -p, -p (1 - p)
and -p (1 - p) (1 - 2 p), or 1 - p and the same higher ones.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from glmmlab.engine.families.densities import softplus
from glmmlab.engine.families.state import kept_on


class ZeroModelRows:
    """The zero model's per-row pieces (see the module docstring); mixed into ModelledFamily, whose ``zi_eta``,
    ``kind`` and ``_pieces`` (the base density's log f and mu-derivatives per row) they read."""

    kind: str  # "zi" or "hurdle"

    def zi_eta(self, resp) -> np.ndarray | None:
        raise NotImplementedError

    def _pieces(self, resp, mu, q, third: bool):
        raise NotImplementedError

    def _zero_model(self, resp) -> tuple[np.ndarray, ...]:
        """(z = the zero model's predictor, log(1 - p), 1 - p, log p at the zero rows, p at the zero rows,
        log(1 - p) at the zero rows) per row (a member with a zero model), kept on the response for this member,
        rows and zero-model offset: a mode search's row states all share them."""
        keys = (self, getattr(resp, "zi_off", None), resp.y)
        return kept_on(resp, "_zero_kept", keys, lambda: self._zero_parts(resp))

    def _zero_parts(self, resp) -> tuple[np.ndarray, ...]:
        eta_z = self.zi_eta(resp)
        assert eta_z is not None  # a zero model is there (kind)
        zi = resp.zero_rows
        log_1mp = -softplus(eta_z)
        log_p0 = eta_z[zi] + log_1mp[zi]
        return eta_z, log_1mp, np.exp(log_1mp), log_p0, np.exp(log_p0), log_1mp[zi]

    def zi_deviance_derivatives(self, resp, rs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row, on the deviance's scale (-2 log f): its derivative in the zero model's linear predictor, the
        cross derivative with the mean's linear predictor, and the second derivative in the zero model's (the
        Laplace machinery of a zero model with random effects: engine.solvers.joint_laplace). The second: at a
        zero-inflated zero r (1 - r) - p (1 - p) of log f, elsewhere -p (1 - p)."""
        d_ll, dl1, _, d2 = self._zi_pieces(resp, rs, second=False)[0]  # (the mu-derivative's second not read)
        return -2.0 * d_ll, -2.0 * dl1 * rs.h1, -2.0 * d2

    def zi_third_derivatives(self, resp, rs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row, on the deviance's scale (-2 log f), the third derivatives that involve the zero model's
        predictor z (eta the mean's): d3/deta2 dz, d3/deta dz2 and d3/dz3 (the joint Laplace's gradient; d3/deta3
        is the row state's ``dev_eta3``). With r the count part's share of P(y = 0) at a zero-inflated zero,
        dr/dz = -r (1 - r) and dr/d log f0 = r (1 - r): the first is -2 (d l2 h1^2 + d l1 h2) with :meth:`row_partials`'
        mu-derivatives, the second -2 h1 (1 - 2 r) r (1 - r) l1 there (0 elsewhere and in a hurdle, whose parts do
        not share a predictor), the third 2 p (1 - p) (1 - 2 p) plus 2 (1 - 2 r) r (1 - r) there."""
        (_, dl1, dl2, _), p, share = self._zi_pieces(resp, rs)
        h1 = rs.h1
        t001 = -2.0 * (dl2 * h1 * h1 + dl1 * rs.h2)
        t111 = 2.0 * p * (1.0 - p) * (1.0 - 2.0 * p)
        t011 = np.zeros_like(p)
        if self.kind == "zi":
            zi = resp.zero_rows
            r, rr, l1z = share
            a = (1.0 - 2.0 * r) * rr
            t011[zi] = -2.0 * h1[zi] * a * l1z
            t111[zi] += 2.0 * a
        return t001, t011, t111

    def _zi_rows(self, resp, rs):
        return self._zi_pieces(resp, rs)[0]

    def _zi_first(self, resp, rs) -> np.ndarray:
        """d log f / dz per row alone (:meth:`_zi_pieces`' first), with p kept per member."""
        p, base = kept_on(resp, "_zi_first_kept", (self, getattr(resp, "zi_off", None), resp.y),
                          lambda: self._zi_first_base(resp))
        d_ll = base.copy()
        if self.kind == "zi":
            zi = resp.zero_rows
            d_ll[zi] = (1.0 - self._mixture(resp, rs.mu)[0]) - p[zi]
        return d_ll

    def _zi_first_base(self, resp) -> tuple[np.ndarray, np.ndarray]:
        p = special.expit(self._zero_model(resp)[0])
        d_ll = -p
        d_ll[resp.zero_rows] += 1.0
        return p, d_ll

    def _zi_pieces(self, resp, rs, second: bool = True):
        """((d log f, d l1, d l2, d2 log f) in the zero model's predictor per row, the zero probabilities p, and at
        the zero rows of a zero-inflation (r, r (1 - r), l1) or None). ``second`` False: d l2 left 0 (not read)."""
        eta_z = self._zero_model(resp)[0]
        p = special.expit(eta_z)
        d_ll = -p
        d_ll[resp.zero_rows] += 1.0
        d2 = -p * (1.0 - p)
        zeros = np.zeros_like(p)
        if self.kind == "hurdle":
            return (d_ll, zeros, zeros, d2), p, None
        zi = resp.zero_rows
        mu = rs.mu
        r, rr, l1z, l2z = self._mixture(resp, mu)
        d_ll[zi] = (1.0 - r) - p[zi]
        d2[zi] += rr
        dl1, dl2 = np.zeros_like(p), np.zeros_like(p)
        dl1[zi] = -rr * l1z
        if second:
            dl2[zi] = -rr * (l2z + (1.0 - 2.0 * r) * l1z * l1z)
        return (d_ll, dl1, dl2, d2), p, (r, rr, l1z)

    def _mixture(self, resp, mu):
        """At the zero rows of a zero-inflation: (r, r (1 - r), l1, l2), r the count part's share of P(y = 0)
        and l1, l2 the base's mu-derivatives, from the row state's own pass where it made these means (the same
        numbers), else computed again."""
        kept = getattr(resp, "_zi_mix", None)
        if kept is not None and kept[0] is self and kept[1] is mu:
            return kept[2]
        zi = resp.zero_rows
        _, _, ll, l1, l2, _, _, _ = self._pieces(resp, mu, 1.0 - mu, False)  # (the count bases do not read q)
        r = zero_share(self._zero_model(resp), ll[zi])[1]
        return r, r * (1.0 - r), l1[zi], l2[zi]


def zero_share(zero_model: tuple, ll0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At the zero rows of a zero-inflation, from :meth:`ZeroModelRows._zero_model`'s pieces and the count part's
    log f(0 | mu) ``ll0``: (log P(y = 0) = log(p + (1 - p) f0), the count part's share r of it). Both terms are at
    most 1 and p at least plogis(-60) (the coefficients' range), so the sum neither overflows nor underflows."""
    p0, log_1mp_z = zero_model[4], zero_model[5]
    e = np.exp(log_1mp_z + ll0)  # (1 - p) f0
    total = e + p0
    return np.log(total), np.divide(e, total, out=e)
