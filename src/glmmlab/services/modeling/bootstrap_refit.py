"""The bootstrap's refits that keep the fitted model's structure (:mod:`glmmlab.engine.solvers.refit`,
:mod:`glmmlab.engine.solvers.refit_laplace`): the design, the random-effects structure, the factorisation pattern
and the start (the fit's estimates) are made once per process, and a replicate gives only its response, and gets
only the interval's parameters back (no standard errors, Satterthwaite, diagnostics or result record).

- A linear mixed model with one grouping factor: all of a chunk's replicates at once (:class:`LmmRefits`).
- A binomial or Poisson GLMM (Laplace): one replicate after another, Newton steps with the exact gradient from
  the fit's optimum and Hessian (:class:`LaplaceRefits`).
- Any other model: None, and every replicate is refitted the ordinary way. A replicate the fast refit could not
  settle comes back as None and is refitted the ordinary way too (:func:`glmmlab.services.modeling.bootstrap`).
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS


class LmmRefits:
    """Gaussian + identity, one grouping factor: the batched profiled REML/ML deviance."""

    def __init__(self, payload: dict):
        from glmmlab.engine.solvers.refit import BatchedLmm

        self.names = payload["names"]
        self.x_names = payload["x_names"]
        self.model = BatchedLmm(payload["frame"], self.x_names, reml=payload["method"] == "REML")
        self.theta0 = np.asarray(payload["thetas"], dtype=float)

    def refit_many(self, Y: list[np.ndarray]) -> list[np.ndarray | None]:
        out = self.model.fit(np.stack(Y), self.theta0)
        table = np.column_stack([out["sd_cor"], out["sigma"], out["beta"]])
        return [table[b] if out["converged"][b] else None for b in range(len(Y))]


class LaplaceRefits:
    """Binomial and Poisson (Laplace): Newton steps from the fit's optimum and Hessian, per replicate."""

    def __init__(self, payload: dict):
        from glmmlab.engine.solvers.refit_laplace import LaplaceRefitter

        fam, lk = FAMILIES[payload["family"]], LINKS[payload["link"]]
        x_names = payload["x_names"]
        beta = np.array([payload["beta"][nm] for nm in x_names])
        self.model = LaplaceRefitter(payload["frame"], fam, lk, x_names, np.asarray(payload["thetas"], float), beta)
        names = payload["names"]
        nvc = len(names) - len(x_names)
        pos = {nm: k for k, nm in enumerate(names)}
        self.k = len(names)
        self.beta_at = np.array([pos[nm] for nm in self.model.kept], dtype=int)
        self.nvc = nvc

    def refit_many(self, Y: list[np.ndarray]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for y in Y:
            got = self.model.refit(y)
            if got is None:
                out.append(None)
                continue
            vals = np.full(self.k, np.nan)  # a fixed effect the fit dropped stays NaN
            vals[: self.nvc] = got[0]
            vals[self.beta_at] = got[1]
            out.append(vals)
        return out


def batched(payload: dict) -> bool:
    """Whether :func:`refitter` refits a chunk's replicates all at once (then chunks are best large)."""
    from glmmlab.engine.solvers.refit import batched_lmm_ok

    return payload["family"] == "gaussian" and payload["link"] == "identity" \
        and payload.get("method") in ("REML", "ML") and batched_lmm_ok(payload["frame"])


def refitter(payload: dict) -> LmmRefits | LaplaceRefits | None:
    """The structure-keeping refits of the model in ``payload`` (the bootstrap's), or None when it has none."""
    from glmmlab.engine.solvers.refit_laplace import laplace_refit_ok

    mf = payload["frame"]
    fam = FAMILIES.get(payload["family"])
    if fam is None or payload.get("family_parameter") is not None:
        return None
    spec = payload.get("spec")
    if spec is not None and int(getattr(spec, "nagq", 1) or 1) > 1:
        return None
    method = payload.get("method")
    if payload["family"] == "gaussian" and payload["link"] == "identity":
        return LmmRefits(payload) if batched(payload) else None
    if method == "Laplace" and laplace_refit_ok(mf, fam):
        return LaplaceRefits(payload)
    return None
