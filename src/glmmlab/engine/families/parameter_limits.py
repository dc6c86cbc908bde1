"""Family parameters whose limit is a simpler family: the negative binomials' dispersion at the Poisson (NB2's
theta -> infinity, NB1's phi -> 0), the beta-binomial's phi -> infinity at the binomial, the t's df -> infinity at
the normal.

Data without the extra variation the parameter describes (counts no more variable than Poisson ones) put the
optimum at the limit, where the parameter is infinite on its optimiser's (log) scale. The deviance there flattens
out like c / theta, so a quasi-Newton run stops wherever its steps become small (glmmTMB reports "false
convergence" or a non-positive-definite Hessian on such fits); a fit that stopped at theta = 1,100 can lie 0.05
below the limit's log-likelihood. The Laplace driver therefore fits the model once more with the parameter held
at the limit (:func:`limit_start`) when a fit ends part of the way there, keeps the better of the two, holds a
parameter at its limit out of the Hessian (as an SD at 0) and says so (:func:`limit_warnings`)."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.distributions import LIMITS
from glmmlab.engine.families.modelled import HURDLE_BASE, ModelledFamily

# where the fit at the limit holds the parameter, on the log scale: inside the families' box LIMIT_RANGE (-36, 36)
# and a zero or dispersion model's (-60, 60); NB2 at theta = e^35 = 1.6e15 is the Poisson to a deviance of
# sum((y - mu)^2 - y) / theta
PLAIN_LIMIT, MODELLED_LIMIT = 35.0, 35.0
NEAR_FROM = 5.0  # a fit that ended beyond this on the limit's side (NB2: theta > 148) is tried at the limit too
HELD_FROM = 18.0  # a parameter that ended beyond this on the limit's side (NB2: theta > 6.6e7) is at the limit


def _positions(fam) -> list[tuple[int, float, str, str]]:
    """(position in the optimiser's vector of the family's parameters, the limit start there, the parameter's
    name, what the limit means) for each parameter of ``fam`` with a limit. A zero-inflation model ``~ 1`` has one
    too: its intercept at -infinity (no structural zeros) is the model without zero-inflation."""
    out = []
    if isinstance(fam, ModelledFamily):
        if fam.kind == "zi" and fam.zi_names == ("(Intercept)",):
            out.append((0, -MODELLED_LIMIT, "zero-inflation probability",
                        "no zeros beyond the count model's, so these estimates are those of the model without "
                        "zero-inflation. Leaving out zi fits it with one parameter less; the zero-inflation "
                        "intercept has no standard error."))
        entry = LIMITS.get(fam.base.name)
        if entry is None:
            return out
        name, side, limit_family, shows = entry
        if fam.kind == "hurdle":
            limit_family = next((k for k, v in HURDLE_BASE.items() if v == limit_family), limit_family)
        what = _what(name, shows, limit_family)
        if fam.n_disp == 1 and not fam.disp_given and fam.base.parameter_names[0] == name:
            out.append((fam.n_zi, side * MODELLED_LIMIT, name, what))
        for i, rest in enumerate(fam.rest_names):
            if rest == name:
                out.append((fam.n_zi + fam.n_disp + i, side * MODELLED_LIMIT, name, what))
        return out
    entry = LIMITS.get(fam.name)
    if entry is None:
        return out
    name, side, limit_family, shows = entry
    for j, i in enumerate(fam.free_parameters()):
        if fam.parameter_names[i] == name and fam.parameter_scales[i] == "log":
            out.append((j, side * PLAIN_LIMIT, name, _what(name, shows, limit_family)))
    return out


def _what(name: str, shows: str, limit_family: str) -> str:
    return (f"{shows}, so these estimates are those of the {limit_family} model. family='{limit_family}' fits it "
            f"with one parameter less; the {name} has no standard error.")


def limit_start(fam, psi: np.ndarray) -> np.ndarray | None:
    """``psi`` (the family's parameters on the optimiser's scale) with each parameter that ended part of the way to
    its limit (or past the limit start) moved to the limit start; None when none did (or the family has no such
    parameter)."""
    out = np.array(psi, dtype=float)
    moved = False
    for j, at, _, _ in _positions(fam):
        if np.sign(at) * out[j] > NEAR_FROM and out[j] != at:
            out[j] = at
            moved = True
    return out if moved else None


def at_limit(fam, psi: np.ndarray) -> np.ndarray:
    """Which entries of ``psi`` are at their limit (held out of the Hessian)."""
    held = np.zeros(np.size(psi), dtype=bool)
    for j, at, _, _ in _positions(fam):
        held[j] = np.sign(at) * float(psi[j]) > HELD_FROM
    return held


def limit_warnings(fam, psi: np.ndarray) -> list[str]:
    """What a fit with a parameter at its limit means, in words."""
    out = []
    for j, at, name, what in _positions(fam):
        if np.sign(at) * float(psi[j]) > HELD_FROM:
            where = "infinity" if at > 0 else "0"
            value = 1.0 / (1.0 + np.exp(-float(psi[j]))) if name.startswith("zero") else np.exp(float(psi[j]))
            out.append(f"The {fam.label} family's {name} went to its limit ({name} -> {where}; held at "
                       f"{value:.3g}): the data show {what}")
    return out
