"""Families with more than one linear predictor per row (glmmTMB's model): a zero-inflation model (the
probability of a structural zero), a hurdle model (the probability of a zero, with a zero-truncated count or a
positive continuous part), and a dispersion model (the family's dispersion parameter as a log-linear function of
covariates).

The engine sees such a model as a :class:`ModelledFamily`: a family member whose own parameter vector holds the
coefficients of the zero and dispersion models (and the base family's other parameters: the t's df). A row's
structural-zero probability p_i = plogis(x_zi,i' beta_zi) and dispersion d_i = exp(x_d,i' beta_d) are computed from
the rows' designs, which the response carries (``zi_X``, ``disp_X``; :class:`~glmmlab.engine.families.response
.Response` slices them per block). The mean's linear predictor keeps its random effects, so the Laplace machinery
is unchanged: it needs log f(y_i | mu_i) and its first three derivatives in mu at each row's own p_i and d_i, which
follow from the base density's by the chain rule:

- zero-inflation, y = 0: log(p + (1 - p) f0(mu)) = log(exp(log p) + exp(log(1 - p) + l0(mu))); with r the share of the
  second term, its mu-derivatives are r l0', r l0'' + r (1 - r) l0'^2 and r l0''' + 3 r (1 - r) l0' l0'' +
  r (1 - r) (1 - 2 r) l0'^3; y > 0: log(1 - p) + log f(y | mu).
- hurdle, y = 0: log p (free of mu); y > 0: log(1 - p) + log f(y | mu) - log(1 - f0(mu)), whose truncation term
  has, with c = f0 / (1 - f0), the derivatives c l0', c l0'' + c (1 + c) l0'^2 and c l0''' + 3 c (1 + c) l0' l0''
  + c (1 + c) (1 + 2 c) l0'^3 (a continuous part, the Gamma, has no mass at 0 and no truncation term).

The dispersion's parameterisation is glmmTMB 1.1.5's: the log of the Gaussian variance, of the Gamma shape, of
the negative binomial's theta (NB2) or phi (NB1), of the beta and beta-binomial precision phi, of the t's scale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.densities import (
    _cube,
    _density,
    _rows_member,
    disp_partials,
    zero_disp_partials,
    zero_terms,
)
from glmmlab.engine.families.distributions import DensityFamily, Family, _check_counts, _positive
from glmmlab.engine.families.state import kept_on
from glmmlab.engine.families.zero_model import ZeroModelRows
from glmmlab.engine.families.zero_state import ZeroInflatedState, zi_mixture

# the families whose zero model is a hurdle (the base family whose positive part they truncate)
HURDLE_BASE = {"truncated_poisson": "poisson", "truncated_nbinom2": "negbin", "truncated_nbinom1": "nbinom1",
               "ziGamma": "gamma"}
# the base families a zero-inflation model is offered for (counts)
ZI_BASES = ("poisson", "negbin", "nbinom1")
# the base families a dispersion model is offered for, with the name of the parameter exp(eta_d) is (glmmTMB's)
DISP_PARAMETER = {"negbin": "theta", "nbinom1": "phi", "gaussian": "variance", "gamma": "shape",
                  "beta_family": "phi", "betabinomial": "phi", "t_family": "sigma"}


# -- the family with zero and dispersion models --------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ModelledFamily(ZeroModelRows, DensityFamily):
    """A base density with a zero model (``kind`` "zi" or "hurdle", or "" for none) and/or a dispersion model.
    :attr:`parameters` is the optimiser's vector: the zero model's coefficients, the dispersion model's, then the
    base's other parameters on their optimiser scale (the t's log df)."""

    base: Any = None
    kind: str = ""
    n_zi: int = 0
    n_disp: int = 0
    zi_names: tuple[str, ...] = ()
    disp_names: tuple[str, ...] = ()
    rest_names: tuple[str, ...] = ()
    disp_given: bool = False  # a dispersion formula was given (else the family's one constant dispersion)
    shift_zi: float = 0.0  # added to every row's zero-model predictor (the gradient's differences)
    shift_disp: float = 0.0

    # -- parameters: coefficients on their own scale --------------------------------------------------------
    def to_internal(self, values) -> np.ndarray:
        return np.asarray(values, dtype=float)

    def from_internal(self, x) -> tuple[float, ...]:
        return tuple(float(v) for v in x)

    def internal_range(self) -> tuple[float, float]:
        return -60.0, 60.0

    def with_parameters(self, values) -> "Family":
        # a copy with its parameters set (dataclasses.replace runs __init__ over every field: some 50 us, once
        # per evaluation of the deviance and of the model without random effects)
        out = copy.copy(self)
        object.__setattr__(out, "parameters", tuple(float(v) for v in values))
        return out

    def shifted(self, part: str, h: float) -> "ModelledFamily":
        """This member with ``h`` added to every row's zero-model (``part`` "zi") or dispersion ("disp")
        predictor."""
        return replace(self, shift_zi=h) if part == "zi" else replace(self, shift_disp=h)

    def row_parts(self) -> list[tuple[str, slice]]:
        """The predictors that vary by row: (the response's design attribute, its coefficients' positions)."""
        out = []
        if self.kind and self.n_zi:
            out.append(("zi", slice(0, self.n_zi)))
        if self.n_disp:
            out.append(("disp", slice(self.n_zi, self.n_zi + self.n_disp)))
        return out

    def rest_positions(self) -> list[int]:
        a = self.n_zi + self.n_disp
        return list(range(a, a + len(self.rest_names)))

    def shares_response(self, other: Family) -> bool:
        """Whether a response prepared for ``other`` serves this member (same base: only coefficients differ)."""
        return isinstance(other, ModelledFamily) and type(other.base) is type(self.base) \
            and other.kind == self.kind

    # -- per-row parameters ---------------------------------------------------------------------------------
    def zi_eta(self, resp) -> np.ndarray | None:
        if not self.kind:
            return None
        if not self.n_zi:  # a hurdle family without a zero model: no zeros (checked), P(0) = 0
            return np.full(resp.y.shape[0], -np.inf)
        b = np.asarray(self.parameters[: self.n_zi])
        eta = resp.zi_X @ b + self.shift_zi
        off = getattr(resp, "zi_off", None)
        return eta if off is None else eta + off

    def dispersion_rows(self, resp) -> np.ndarray | float | None:
        if not self.n_disp:
            return None
        b = np.asarray(self.parameters[self.n_zi: self.n_zi + self.n_disp])
        if getattr(resp, "disp_constant", False):
            return float(np.exp(float(resp.disp_X[0] @ b) + self.shift_disp))
        return np.exp(resp.disp_X @ b + self.shift_disp)

    def member(self, resp) -> Any:
        """The base density at this member's per-row dispersion (and its other parameters), kept on the response
        for this member and rows (a dataclass copy costs more than a row state's arithmetic on 600 rows)."""
        return kept_on(resp, "_member_kept", (self, resp.y), lambda: self._build_member(resp))

    def _build_member(self, resp) -> Any:
        d = self.dispersion_rows(resp)
        rest = [self._rest_value(i, v) for i, v in enumerate(self.parameters[self.n_zi + self.n_disp:])]
        if d is None and not rest:
            m = self.base
        else:
            values = ((d,) if d is not None else tuple(self.base.parameters[:1])) + tuple(rest)
            m = copy.copy(self.base)  # (dataclasses.replace runs __init__ over every field, as with_parameters)
            object.__setattr__(m, "parameters", values)
        return m

    def _rest_value(self, i: int, x: float) -> float:
        scale = self.base.parameter_scales[1 + i]
        return float(np.exp(x)) if scale == "log" else float(1.0 + special.expit(x))

    # -- the density ----------------------------------------------------------------------------------------
    def safe_links(self):
        return self.base.safe_links()

    def fast_state(self, resp, eta, link):
        if self.kind == "zi" and link == "log":  # a zero-inflated count: the row state in one pass
            return ZeroInflatedState(self, resp, eta)
        return super().fast_state(resp, eta, link)

    def check_response(self, y, response):
        if self.base.name in ZI_BASES:
            _check_counts(y, response, self.name)
        elif self.base.name == "gamma":
            if np.any(y < 0) or not np.all(np.isfinite(y)):
                raise GlmmInputError(f"response '{response}' must be zero or positive for the {self.name} family")
        else:
            self.base.check_response(y, response)
        if self.kind == "hurdle" and not np.any(y == 0) and self.n_zi:
            raise GlmmInputError(
                f"response '{response}' has no zeros: a hurdle model ({self.name} with a zero model) needs some; "
                "fit the count part alone (leave out the zi formula)")
        if self.kind == "hurdle" and not self.n_zi and np.any(y == 0):
            raise GlmmInputError(
                f"response '{response}' has zeros, which the zero-truncated family {self.name} cannot give without "
                "a zero model: add one (zi='~ 1' or with covariates) for a hurdle model, or use the untruncated family")

    def start_mu(self, y, link):
        return self.base.start_mu(y, link)

    def _prepare(self, resp):
        self.base._prepare(resp)
        resp.zero = resp.y == 0
        resp.zero_rows = np.flatnonzero(resp.zero)
        X = getattr(resp, "disp_X", None)
        # a constant dispersion (the design of ~ 1): one number, not a value per row
        resp.disp_constant = X is not None and X.shape[1] == 1 and bool(np.all(X == X[:1]))

    def row_partials(self, part: str, resp, rs, first_only: bool = False):
        """Per row, the derivatives in the zero model's linear predictor (``part`` "zi") of log f, of the
        deviance's first and second eta-derivatives, as :meth:`GeneralLaplace._psi_gradient` combines them;
        None for another part (its differences are taken). With r the count part's share of P(y = 0) and p the
        zero probability: zero-inflated y = 0: (1 - r) - p, and the mu-derivatives -r (1 - r) l1 and
        -r (1 - r) (l2 + (1 - 2 r) l1^2); y > 0: -p, 0, 0. Hurdle: 1 - p at y = 0, -p at y > 0, 0, 0.
        ``first_only``: only the first, as a 1-tuple (the gradient of the model without random effects)."""
        if part == "disp":
            rows = self._disp_rows(resp, rs, first_only)
            if rows is None or first_only:
                return rows
            d_ll, dl1, dl2 = rows
        elif part != "zi" or not self.kind:
            return None
        elif first_only:
            return (self._zi_first(resp, rs),)
        else:
            d_ll, dl1, dl2, _ = self._zi_rows(resp, rs)
        h1, h2 = rs.h1, rs.h2
        return d_ll, -2.0 * dl1 * h1, -2.0 * (dl2 * h1 * h1 + dl1 * h2)

    def _disp_rows(self, resp, rs, first_only: bool = False):
        """(d log f, d l1, d l2) per row in the dispersion model's predictor (the log of d), the zero model's
        mixture or truncation included; None where the base has no closed form here. ``first_only``: (d log f,)."""
        mu = rs.mu
        m, eta_z, ll, l1, l2, _, _, _ = self._pieces(resp, mu, 1.0 - mu, False)
        base = disp_partials(m, resp, mu, first_only)
        if base is None:
            return None
        dll, dl1, dl2 = (np.array(a, dtype=float) for a in ((base[0], 0.0, 0.0) if first_only else base))
        if not self.kind or eta_z is None:
            return (dll,) if first_only else (dll, dl1, dl2)
        zi = resp.zero_rows
        if self.kind == "zi":
            r, rr = self._mixture(resp, mu)[:2]
            if first_only:
                dll[zi] = r * dll[zi]
                return (dll,)
            d0, a1, a2, b1, b2 = dll[zi], l1[zi], l2[zi], dl1[zi], dl2[zi]
            dll[zi] = r * d0
            dl1[zi] = r * b1 + a1 * rr * d0
            dl2[zi] = r * b2 + a2 * rr * d0 + (1.0 - 2.0 * r) * rr * d0 * a1 * a1 + 2.0 * rr * a1 * b1
            return dll, dl1, dl2
        trunc = self._truncation(resp, m, mu)
        if trunc is None:  # a continuous positive part (ziGamma): no mass at 0, so no truncation term
            dll[zi] = 0.0
            if first_only:
                return (dll,)
            dl1[zi] = dl2[zi] = 0.0
            return dll, dl1, dl2
        zd = zero_disp_partials(m, mu)
        if zd is None:
            return None
        c, cc, (_, d1, d2, _) = trunc  # c = f0 / (1 - f0)
        e0, e1, e2 = zd
        if first_only:
            dll = dll + c * e0
            dll[zi] = 0.0
            return (dll,)
        dll = dll + c * e0
        dl1 = dl1 + c * e1 + d1 * cc * e0
        dl2 = dl2 + c * e2 + d2 * cc * e0 + cc * (1.0 + 2.0 * c) * e0 * d1 * d1 + 2.0 * cc * d1 * e1
        dll[zi] = dl1[zi] = dl2[zi] = 0.0
        return dll, dl1, dl2

    def _sat(self, y, resp):
        return 0.0

    def _pieces(self, resp, mu, q, third: bool):
        """(member, zero-model predictor, the base's log f and mu-derivatives, info, var), kept on the response
        for this member and these means (the gradient's third derivatives and zero-model partials read them again
        for the row state just made)."""
        cached = getattr(resp, "_pieces", None)
        if cached is not None and cached[0] is self and cached[1] is mu:
            pieces = cached[2]
        else:
            pieces = self._new_pieces(resp, mu, q, self.member(resp), self._zero_model(resp) if self.kind else None)
        if third and "l3" not in pieces:
            pieces["l3"] = pieces["m"].mu_third(resp, mu, q)
        return (pieces["m"], pieces["eta_z"], pieces["ll"], pieces["l1"], pieces["l2"], pieces.get("l3"),
                pieces["info"], pieces["var"])

    def _new_pieces(self, resp, mu, q, m, zero_model: tuple | None) -> dict:
        """:meth:`_pieces`' dict at new means, kept on the response (``m``: the member, ``zero_model``: the zero
        model's kept pieces or None)."""
        ll, l1, l2, info, var = m.mu_terms(resp, mu, q)
        pieces = {"m": m, "eta_z": None if zero_model is None else zero_model[0], "ll": ll, "l1": l1, "l2": l2,
                  "info": info, "var": var}
        resp._pieces = (self, mu, pieces)
        return pieces

    def mu_terms(self, resp, mu, q):
        ll, l1, l2, moments, _ = self._combined(resp, mu, q, third=False)
        return (ll, l1, l2) + moments()

    def mu_core(self, resp, mu, q):
        return self._combined(resp, mu, q, third=False)[:4]

    def mu_third(self, resp, mu, q):
        kept = getattr(resp, "_zi_mix", None)
        if self.kind == "zi" and kept is not None and kept[0] is self and kept[1] is mu:
            # the mixture's shares from the row state's own pass: only the third derivative is new
            r, rr, l1z, l2z = kept[2]
            l3 = self._pieces(resp, mu, q, True)[5]
            zi = resp.zero_rows
            n3 = np.array(l3, dtype=float)
            n3[zi] = r * l3[zi] + 3.0 * rr * l1z * l2z + rr * (1.0 - 2.0 * r) * _cube(l1z)
            return n3
        kept = getattr(resp, "_hurdle_mix", None)
        if self.kind == "hurdle" and kept is not None and kept[0] is self and kept[1] is mu:
            # the truncation's pieces from the row state's own pass (the same numbers)
            c, cc, zt = kept[2]
            l3 = self._pieces(resp, mu, q, True)[5]
            _, d1, d2, d3 = zt
            return np.where(~resp.zero, l3 + c * d3 + 3.0 * cc * d1 * d2 + cc * (1.0 + 2.0 * c) * _cube(d1), 0.0)
        return self._combined(resp, mu, q, third=True)[4]

    def _truncation(self, resp, m, mu):
        """A hurdle's truncation at ``mu`` (member ``m``): (c = f0 / (1 - f0), c (1 + c), :func:`zero_terms`), from
        the row state's own pass where it made these means (the same numbers), else computed; None for a
        continuous positive part (no mass at 0)."""
        kept = getattr(resp, "_hurdle_mix", None)
        if kept is not None and kept[0] is self and kept[1] is mu:
            return kept[2]
        zt = zero_terms(m, mu)
        if zt is None:
            return None
        c = 1.0 / np.expm1(-np.minimum(zt[0], -1e-300))
        return c, c * (1.0 + c), zt

    def _combined(self, resp, mu, q, third: bool):
        """(log f, its first and second mu-derivatives, a function giving (the expected information, Var(y)), the
        third derivative or None) per row, the zero model's mixture or truncation included."""
        m, eta_z, ll, l1, l2, l3, info, var = self._pieces(resp, mu, q, third)
        if eta_z is None:
            return ll, l1, l2, lambda: (info, var), l3
        zero_model = self._zero_model(resp)
        _, log_1mp, one_m_p = zero_model[:3]
        z = resp.zero
        if self.kind == "zi":
            new_ll, n1, second, zi_moments, n3 = zi_mixture(self, resp, mu, (ll, l1, l2, l3, info, var), zero_model)
            return new_ll, n1, second(), zi_moments, n3
        # hurdle: zero rows log p; positive rows the truncated density
        zt = zero_terms(m, mu)
        pos = ~z
        if zt is None:
            new_ll = np.where(z, eta_z + log_1mp, log_1mp + ll)
            n1, n2 = np.where(pos, l1, 0.0), np.where(pos, l2, 0.0)
            n3 = None if l3 is None else np.where(pos, l3, 0.0)
        else:
            # (the same numbers as np.where(y = 0, ..., ...): the zero rows set after, log p there kept per member)
            l0, d1, d2, d3 = zt
            gap = np.minimum(l0, -1e-300)
            log1m = np.log(-np.expm1(gap))  # log(1 - f0)
            c = 1.0 / np.expm1(-gap)  # f0 / (1 - f0)
            cc = c * (1.0 + c)
            zi = resp.zero_rows
            new_ll = log_1mp + ll - log1m
            new_ll[zi] = zero_model[3]
            n1 = l1 + c * d1
            n1[zi] = 0.0
            n2 = l2 + c * d2 + cc * d1 * d1
            n2[zi] = 0.0
            n3 = None if l3 is None else np.where(
                pos, l3 + c * d3 + 3.0 * cc * d1 * d2 + cc * (1.0 + 2.0 * c) * _cube(d1), 0.0)
            resp._hurdle_mix = (self, mu, (c, cc, zt))

        def hurdle_moments():
            if zt is None:
                cond, second = mu, var + mu * mu
            else:
                cond = mu * (1.0 + c)  # the truncated mean mu / (1 - f0)
                second = (var + mu * mu) * (1.0 + c)  # E[y^2 | y > 0]
            mean = one_m_p * cond
            return np.where(pos, info, 1e-12), one_m_p * second - mean * mean

        return new_ll, n1, n2, hurdle_moments, n3

    # -- what the results report ----------------------------------------------------------------------------
    def response_means(self, resp, mu: np.ndarray) -> dict[str, np.ndarray]:
        """Per row: the mean of y (zero model included), the conditional part's mean (``fitted_conditional``:
        mu, or the truncated mean of a hurdle), the zero probability (``zi_prob``) and the dispersion, as
        glmmTMB's predict types response, conditional, zprob and disp."""
        m = self.member(resp)
        out: dict[str, np.ndarray] = {}
        d = self.dispersion_rows(resp)
        if d is not None and self.disp_given:
            out["dispersion"] = self.reported_dispersion(np.broadcast_to(d, mu.shape))
        eta_z = self.zi_eta(resp)
        if eta_z is None:
            out["fitted"] = mu
            return out
        p = special.expit(eta_z)
        cond = mu
        if self.kind == "hurdle":
            zt = zero_terms(m, mu)
            if zt is not None:
                cond = mu / (-np.expm1(zt[0]))
        out.update(fitted=(1.0 - p) * cond, fitted_conditional=cond, zi_prob=p)
        return out

    def reported_dispersion(self, d: np.ndarray) -> np.ndarray:
        """exp(eta_d) on glmmTMB's ``sigma`` scale: the SD for the Gaussian (d its variance), 1 / sqrt(shape)
        for the Gamma, d itself for the others."""
        key = self.base.name
        if key == "gaussian":
            return np.sqrt(d)
        if key == "gamma":
            return 1.0 / np.sqrt(d)
        return np.asarray(d, dtype=float)

    def constant_parameters(self) -> dict[str, float]:
        """The family's parameters by glmmTMB's names where the dispersion model is a constant (``~ 1``)."""
        out: dict[str, float] = {}
        if self.n_disp == 1:
            d = float(np.exp(self.parameters[self.n_zi]))
            key = self.base.name
            if key == "gaussian":
                out["sigma"] = float(np.sqrt(d))
            elif key == "gamma":
                out.update(sigma=float(1.0 / np.sqrt(d)), shape=d)
            else:
                out[self.base.parameter_names[0]] = d
        for i, name in enumerate(self.rest_names):
            out[name] = self._rest_value(i, self.parameters[self.n_zi + self.n_disp + i])
        return out

    def sample(self, rng, mu, pw, phi):
        raise NotImplementedError("a zero or dispersion model's rows have their own parameters: use sample_rows")

    def sample_rows(self, rng: np.random.Generator, resp, mu: np.ndarray, pw: np.ndarray) -> np.ndarray:
        """Responses drawn from this model at the conditional means ``mu`` of the rows of ``resp`` (which carries
        their zero and dispersion designs): the base family at each row's dispersion; then a structural zero with
        probability p (zero-inflation), or P(y = 0) = p and otherwise a draw of the zero-truncated base (hurdle: the
        base redrawn where it gave 0, up to 200 times, and 1 where it never left 0, a truncated count's floor)."""
        m = self.member(resp)
        y = np.asarray(m.sample(rng, mu, pw, 1.0), dtype=float)
        eta_z = self.zi_eta(resp)
        if eta_z is None:
            return y
        p = special.expit(eta_z)
        zero = rng.random(mu.shape) < p
        if self.kind == "hurdle" and zero_terms(m, mu) is not None:
            redo = np.flatnonzero((y == 0) & ~zero)
            for _ in range(200):
                if not redo.size:
                    break
                sub = _rows_member(m, redo)
                y[redo] = sub.sample(rng, mu[redo], pw[redo] if np.ndim(pw) else pw, 1.0)
                redo = redo[y[redo] == 0]
            y[redo] = 1.0
        y[zero] = 0.0
        return y


def modelled_family(fam: Family, zi_names: list[str] | None, disp_names: list[str] | None) -> ModelledFamily:
    """The :class:`ModelledFamily` of a family (glmmTMB's name; a hurdle family's zero model is its ``zi``) with
    a zero model whose coefficients are ``zi_names`` (None: no zero model) and a dispersion model whose
    coefficients are ``disp_names`` (None: the family's constant dispersion, a design of the intercept alone)."""
    key = fam.name
    kind = ""
    if key in HURDLE_BASE:
        kind, key = "hurdle", HURDLE_BASE[key]
    elif zi_names is not None:
        if key not in ZI_BASES:
            raise GlmmInputError(
                f"a zero-inflation model (zi) is offered for the count families poisson, nbinom2 and nbinom1, not "
                f"{fam.name}" + (": for exact zeros in a positive response use the ziGamma family (a hurdle)"
                                 if key == "gamma" else ""))
        kind = "zi"
    base = _density(key)
    has_disp = key in DISP_PARAMETER
    if disp_names is not None and not has_disp:
        raise GlmmInputError(f"the {fam.name} family has no dispersion parameter to model: leave out disp")
    disp_given = disp_names is not None
    if has_disp and disp_names is None:
        disp_names = ["(Intercept)"]
    rest_names = tuple(base.parameter_names[1:]) if base.parameter_names else ()
    if key == "tweedie":
        raise GlmmInputError("zero and dispersion models are not offered for the tweedie family yet")
    zi_n = list(zi_names or [])
    dn = list(disp_names or [])
    start = [0.0] * (len(zi_n) + len(dn)) + [0.0] * len(rest_names)
    common = {f.name: getattr(base, f.name) for f in fields(Family)}
    label = base.label + {"zi": ", zero-inflated", "hurdle": ", hurdle"}.get(kind, "")
    common.update(name=fam.name, label=label, has_dispersion=False, edm=False, observed_information=True,
                  hessian_se=True, parameter_names=tuple([f"zi~{n}" for n in zi_n] + [f"disp~{n}" for n in dn]
                                                         + list(rest_names)),
                  parameters=tuple(start), parameter_scales=tuple("coef" for _ in start), fixed_parameters=(),
                  mean_range=(0.0, np.inf) if key != "gaussian" and key != "t_family" else base.mean_range,
                  mu_valid=base.mu_valid if key not in ("poisson", "negbin", "gamma") else _positive)
    return ModelledFamily(**common, base=base, kind=kind, n_zi=len(zi_n), n_disp=len(dn), zi_names=tuple(zi_n),
                          disp_names=tuple(dn), rest_names=rest_names, disp_given=disp_given)


