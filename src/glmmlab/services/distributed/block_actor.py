"""A block of whole outer groups as a Dask actor: built on a worker from one partition of the shuffled rows, it
holds the rows' scaled design, response, weights and offset with a :class:`GeneralLaplace` block (a
:class:`ProfiledLmm` block for REML), and answers the driver's evaluations with small sums."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from glmmlab.engine.families.distributions import Family, negbin_family
from glmmlab.engine.families.response import Response
from glmmlab.engine.model.options import check_options
from glmmlab.engine.model.terms import FactorBlock, merge_terms
from glmmlab.engine.solvers.glm_start import crossed_moment_sums, glm_pass, moment_sums
from glmmlab.engine.solvers.laplace import GeneralLaplace, edge_gap
from glmmlab.engine.solvers.laplace_fit import laplace_rows
from glmmlab.engine.solvers.likelihood import likelihood_sums
from glmmlab.engine.solvers.reml import ProfiledLmm, reml_rows
from glmmlab.engine.solvers.row_blocks import normal_equations, stable_order
from glmmlab.engine.solvers.scaling import GLM_PIECE, design_dot
from glmmlab.engine.solvers.structure import Structure, check_coupled_size
from glmmlab.engine.solvers.threads import one_blas_thread
from glmmlab.services.distributed.cluster import release_unused_memory
from glmmlab.services.distributed.coupled import PartialFactor
from glmmlab.services.distributed.coupled_block import CoupledRows
from glmmlab.services.distributed.partitions import ROW

# The workers import this module to build the actors: what only the driver needs is imported elsewhere.


def _ones_or(a: np.ndarray | None, n: int, value: float) -> np.ndarray:
    """An array of prior weights or offsets, or ``value`` on every row as a read-only view of one number (no
    memory per row) when the frame has none or all its entries equal it."""
    if a is None or bool(np.all(np.asarray(a) == value)):
        return np.broadcast_to(np.float64(value), (n,))
    return np.asarray(a, dtype=float)


class GeneralBlockActor:
    """A block of whole outer groups, built on a worker from one partition of the shuffled rows: its rows'
    scaled design (float32 above LEAN_ROWS), response, weights, offset and input row numbers, its factor blocks
    on local levels (in the global order of blocks and levels) and a GeneralLaplace, or for a Gaussian identity
    model a ProfiledLmm (REML)."""

    def __init__(self, part: pd.DataFrame, spec: dict):
        fam, lk = check_options(spec["family"], spec["link"], 0.95, 100, 1e-6, 1, "working", True, "auto")
        self.fam, self.lk, self.lean = fam, lk, bool(spec["lean"])
        self._load(part, spec)
        del part
        n = self.y.shape[0]
        self.reml = fam.name == "gaussian" and lk.name == "identity"
        check_coupled_size(self.st)  # before the first evaluation on this worker
        self.block: GeneralLaplace | ProfiledLmm
        self.final_at: tuple = ()  # the point of the last final(), where take_rows() computes the rows' results
        self.coupled_u: np.ndarray | None = None  # crossed factors: the modes of the last final (coupled.py)
        self._coupled: CoupledRows | None = None  # crossed factors, Laplace: the rows' side of the mode search
        self._glm: tuple[float | None, Response] | None = None  # the GLM's response constants, per family member
        if not self.reml:  # the ProfiledLmm comes with the centring fit of every block's rows (centre)
            self.block = self.lap = GeneralLaplace(self.st, self.Xs, self.y, self.pw, self.off, fam, lk,
                                                   spec["dispersion"])
            self.lap.keep_last = not self.lean
        assert n == self.rows.shape[0]
        release_unused_memory()  # what building the block used and freed (its temporaries are gone by now)

    def _load(self, part: pd.DataFrame, spec: dict) -> None:
        """The block's arrays: its rows sorted by outer group, then leading level, then input row."""
        mf = spec["rows_of"].block_frame(part, spec)
        rows = part[ROW].to_numpy()
        local = {b.component: b for b in merge_terms(mf.terms)}
        gcodes, maps, local_of = [], [], []
        coupled = bool(spec.get("coupled"))
        for k, comp in enumerate(spec["order"]):
            b, levels = local[comp], spec["levels"][comp]
            glob = np.arange(len(levels)) if b.levels == levels else pd.Index(levels).get_indexer(b.levels)
            gc = glob[np.asarray(b.codes)]
            # the levels in this block (no sort); crossed factors other than the leading one keep every global
            # level, so the blocks' parts of the coupled block add up (see coupled.py)
            present = np.ones(len(levels), dtype=bool) if coupled and k > 0 else \
                np.bincount(gc, minlength=len(levels)) > 0
            gcodes.append(gc)
            maps.append(np.flatnonzero(present))
            local_of.append((np.cumsum(present) - 1).astype(np.int32))  # global level -> local level
        # sorted by outer group, then leading level, then input row: stable sorts of the local levels (radix sorts
        # of 16-bit codes) after the rows' own order, 3x faster than a lexsort of the three
        perm = np.argsort(rows, kind="stable")
        for t in [0] + ([spec["outer"]] if spec["outer"] != 0 else []):
            perm = perm[stable_order(local_of[t][gcodes[t][perm]], maps[t].size)]
        n = mf.n
        blocks = []
        for comp, gc, lmap, to_local in zip(spec["order"], gcodes, maps, local_of):
            b = local[comp]
            ones = b.q == 1 and bool(np.all(b.Z == 1.0))  # a random intercept: no column of ones per row
            Z = np.broadcast_to(1.0, (n, 1)) if ones else np.ascontiguousarray(b.Z[perm])
            codes = to_local[gc[perm]]  # local levels, 32-bit: fewer than the block's rows
            blocks.append(FactorBlock(comp, codes if comp == spec["order"][0] else codes.astype(np.int64),
                                      [spec["levels"][comp][i] for i in lmap], Z, b.names, b.groups))
        del local, gcodes
        X, keep, T = np.asarray(mf.X, dtype=float), list(spec["keep"]), spec["T"]
        if keep != list(range(X.shape[1])):
            X = X[:, keep]
        self.Xs = np.empty((n, T.shape[1]), dtype=np.float32 if self.lean else float)
        for a in range(0, n, GLM_PIECE):  # in pieces: no temporary of the design's size
            self.Xs[a:a + GLM_PIECE] = np.take(X, perm[a:a + GLM_PIECE], axis=0) @ T
        del X
        self.pw = _ones_or(None if mf.weights is None else np.asarray(mf.weights)[perm], n, 1.0)
        self.off = _ones_or(None if mf.offset is None else np.asarray(mf.offset)[perm], n, 0.0)
        self.y = np.take(np.asarray(mf.y, dtype=float), perm)
        index = np.int32 if rows.size == 0 or rows.max() < np.iinfo(np.int32).max else np.int64
        self.rows, self.level_maps = np.take(rows, perm).astype(index), maps
        self.st = Structure(blocks)

    def info(self) -> dict:
        """The block's levels per factor, and for REML the normal equations of its rows (the centring fit)."""
        out: dict[str, Any] = {"level_maps": self.level_maps, "sizes": [b.n_levels for b in self.st.blocks]}
        if self.reml:
            with one_blas_thread():
                out["normal"] = normal_equations(np.asarray(self.Xs, dtype=float), self.y - self.off, self.pw)
        return out

    def centre(self, beta0) -> None:
        """REML: the block's cross-products of [Z, X_s, y - offset - X_s beta0] (one pass over its rows, in
        float64 whatever the design's storage)."""
        with np.errstate(all="ignore"), one_blas_thread():
            self.block = self.prof = ProfiledLmm(self.st, np.asarray(self.Xs, dtype=float), self.y - self.off,
                                                 self.pw, beta0)
        self.prof.Xs = self.Xs  # what final() needs of it (X_s beta at the optimum)

    def _family(self, parameter: float | None) -> Family:
        return self.fam if parameter is None else negbin_family(parameter)

    def glm_pass(self, beta, parameter: float | None = None) -> tuple:
        """One IRLS pass of the GLM over the block's rows (the negative binomial's theta: ``parameter``)."""
        if parameter is None:  # the block's own family: its response constants are the Laplace block's
            resp = self.lap.resp
        else:  # kept for the passes of one GLM (glm_done drops them)
            if self._glm is None or self._glm[0] != parameter:
                self._glm = (parameter, Response(self.y, self._family(parameter)))
            resp = self._glm[1]
        with np.errstate(all="ignore"), one_blas_thread():
            return glm_pass(self.Xs, self.y, self.pw, self.off, resp, self._family(parameter), self.lk, beta)[:4]

    def glm_done(self) -> None:
        self._glm = None

    def likelihood_sums(self, parameter: float | None, dispersion: str) -> dict:
        with np.errstate(all="ignore"):
            return likelihood_sums(self._family(parameter), self.y, self.pw, dispersion)

    def centre_sums(self) -> tuple:
        """X_s'X_s, X_s'1 and X_s'offset (the least-squares fit of a constant, for a start inside the link's
        range)."""
        X = np.asarray(self.Xs, dtype=float)
        return X.T @ X, X.sum(axis=0), X.T @ self.off

    def edge_gap(self, beta, lo: float, hi: float) -> float:
        return edge_gap(design_dot(self.Xs, beta) + self.off, lo, hi)

    def moment_sums(self, beta, parameter: float | None = None) -> dict:
        st = self.st
        with np.errstate(all="ignore"):
            return moment_sums(self.Xs, self.y, self.pw, self.off, beta, self._family(parameter), self.lk,
                               st.codes1, st.L1)

    def crossed_moment_sums(self, beta, parameter: float | None = None) -> dict:
        with np.errstate(all="ignore"):
            return crossed_moment_sums(self.Xs, self.y, self.pw, self.off, beta, self._family(parameter), self.lk,
                                       [(np.asarray(b.codes, dtype=np.intp), b.n_levels) for b in self.st.blocks])

    def set_family(self, parameter: float) -> None:
        self.lap.set_family(negbin_family(parameter))

    def parts(self, theta, beta, gradient: bool) -> dict:
        with np.errstate(all="ignore"), one_blas_thread():
            return self.lap.parts(theta, beta, gradient)

    def sums(self, theta) -> dict:
        with np.errstate(all="ignore"), one_blas_thread():
            return self.prof.sums(theta)

    def final(self, *args) -> dict:
        """Laplace (theta, beta): the modes, conditional covariances and fixed effects' precision with the rows'
        sums (deviance, squared Pearson residuals, fitted probabilities at 0 or 1); REML (theta, beta_s): the
        modes and conditional covariances. The rows' results are computed again when asked for
        (:meth:`take_rows`): kept here, those of every block of a worker would be held at once."""
        self.final_at = args
        with np.errstate(all="ignore"), one_blas_thread():
            fin = self.block.final(*args)
        if self.reml:
            return {"u": fin["u"], "cond": fin["cond"]}
        mu, pearson = fin["mu"], laplace_rows(fin, self.pw)["pearson_residuals"]
        return {"u": fin["u"], "SEE": fin["SEE"], "cond": fin["cond"], "converged": fin["converged"],
                "dev_sum": float(np.sum(fin["dev_rows"])), "pearson2": float(pearson @ pearson),
                "extreme": int(np.sum((mu < 1e-8) | (mu > 1 - 1e-8)))}

    def row_numbers(self) -> np.ndarray:
        return self.rows

    def take_rows(self) -> dict:
        """The rows' results at the point of the last :meth:`final`: fitted values, deviance and Pearson
        residuals, random-effects contributions; a column that is the same array as the one before it (a linear
        model's deviance and Pearson residuals) is sent once, as None."""
        with np.errstate(all="ignore"), one_blas_thread():
            if self.reml and self.coupled_u is not None:  # crossed factors: the modes the driver solved for
                theta, beta_s = self.final_at
                st = self.st
                fin = {"re": st.row_effect(st.b_of_u(self.coupled_u, st.lambdas(theta))),
                       "xb": design_dot(self.Xs, beta_s)}
                out = reml_rows(fin, self.y, self.pw, self.off)
                out["pearson_residuals"] = out["deviance_residuals"]
            elif self.reml:
                out = reml_rows(self.prof.final(*self.final_at), self.y, self.pw, self.off)
                out["pearson_residuals"] = out["deviance_residuals"]  # equal: held and sent once
            elif self._coupled is not None:
                out = self._coupled.rows()
            else:
                out = laplace_rows(self.lap.final_rows(*self.final_at), self.pw)
        keys = list(out)
        return {k: None if i and out[k] is out[keys[i - 1]] else out[k] for i, k in enumerate(keys)}

    def agq(self, theta, beta, z, wq, phi=None) -> float:
        with np.errstate(all="ignore"), one_blas_thread():
            return self.lap.agq(theta, beta, z, wq, phi)

    def deviance_at_modes(self) -> float:
        return self.lap.deviance_at_modes()

    def fixed_precision(self, theta, beta) -> np.ndarray:
        with np.errstate(all="ignore"), one_blas_thread():
            return self.lap.fixed_precision(theta, beta)

    def reset_modes(self) -> None:
        self.lap.reset_modes()


    # -- crossed factors: this block's part of each factor of the penalised system (coupled.py) -------------
    def coupled(self, method: str, *args: Any) -> Any:
        """Laplace: one step of the crossed model's fit on this block's rows (a method of :class:`CoupledRows`)."""
        if self._coupled is None:
            self._coupled = CoupledRows(self.lap)
        with np.errstate(all="ignore"), one_blas_thread():
            return getattr(self._coupled, method)(*args)

    def coupled_sums(self, theta) -> dict:
        """REML: this block's parts of the blocked factor of its cross-products at theta."""
        with np.errstate(all="ignore"), one_blas_thread():
            return PartialFactor(self.st, self.prof.cp, theta).sums()

    def coupled_reml_final(self, theta, beta_s, u2, Sinv) -> dict:
        """REML at the optimum: this block's leading levels' modes (given the coupled ones, ``u2``) and their
        conditional covariances over sigma^2 (given (H^-1)_22, ``Sinv``); the rows' results follow from them
        (:meth:`take_rows`)."""
        p = self.Xs.shape[1]
        with np.errstate(all="ignore"), one_blas_thread():
            pf = PartialFactor(self.st, self.prof.cp, theta)
            pf.sums()
            shift = np.asarray(beta_s, dtype=float) - self.prof.beta0
            g1 = pf.G1[:, :, p] - pf.G1[:, :, :p] @ shift
            u = np.concatenate([pf.u1(g1, u2), u2])
            cond1 = pf.lead_inverse(Sinv)[0]
        self.coupled_u, self.final_at = u, (theta, beta_s)
        return {"u": u, "cond": cond1}
