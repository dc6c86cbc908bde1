"""Fitting a model frame: the one entry point of the engine (:func:`fit_frame`). Checks what the data can tell,
orders rows by the leading factor, scales the design and runs REML (Gaussian identity) or the Laplace
approximation; a single scalar random intercept is the fast special case of the same code."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link
from glmmlab.engine.families.modelled import HURDLE_BASE, modelled_family
from glmmlab.engine.inference import advice
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.design import check_not_constant, rank_deficient_warning
from glmmlab.engine.model.terms import FactorBlock, ModelFrame, merge_terms
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.assemble import record
from glmmlab.engine.solvers.joint_laplace import fit_joint
from glmmlab.engine.solvers.laplace_fit import _fit_laplace
from glmmlab.engine.solvers.reml import _fit_reml
from glmmlab.engine.solvers.row_blocks import BlockSpec, block_count, cut_blocks
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.engine.solvers.structure import Structure
from glmmlab.engine.solvers.threads import THREADED_ROWS, cpu_count, in_threads, one_blas_thread, row_slices


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
    if mf.n and fam.name != "ordinal":  # an ordinal response holds category numbers, not a mean to link
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
              progress: ProgressFn = None, n_blocks: int | None = None,
              theta_start: np.ndarray | None = None, own_design: bool = False) -> GlmmResult:
    """Fit a general mixed model to a :class:`ModelFrame` (options already checked) and return its record.
    ``theta_start``: where the optimiser starts in theta (default lme4's: relative SDs 1, correlations 0).
    ``own_design``: the caller needs ``mf.X`` no more, so the scaled design may take its memory (the fit then
    holds one n x p design, not two); a frame the fit permutes is its own copy anyway."""
    check_not_constant(mf.y, mf.response)
    blocks = merge_terms(mf.terms)
    _check_nagq(blocks, int(model.get("nagq", 1)))
    if model.get("nagq", 1) > 1 and fam.has_dispersion and model.get("dispersion", "estimated") == "lme4":
        raise GlmmInputError(
            f"nagq > 1 with the {fam.name} family needs the dispersion estimated with the other parameters "
            "(dispersion 'estimated', the default); lme4's criterion (dispersion 'lme4') is a Laplace one: use "
            "nagq 1 with it")
    n = mf.n
    # no weights or offset: read-only views of one number, not n-row arrays of ones and zeros
    pw = np.broadcast_to(1.0, (n,)) if mf.weights is None else np.asarray(mf.weights, dtype=float)
    off = np.broadcast_to(0.0, (n,)) if mf.offset is None else np.asarray(mf.offset, dtype=float)
    keep_rows = pw > 0
    if not np.all(keep_rows):
        raise GlmmInputError("weights must be positive for every row used; drop rows with weight 0 first")
    _check_response_mean(mf, fam, lk, pw)
    # rows sorted by outer group, then by the leading factor's levels: per-level work is contiguous and the rows
    # can be cut into blocks of whole outer groups (threads; see row_blocks). The frame is permuted before the
    # design is scaled, so the n x p design is gathered once.
    gaussian_identity = fam.name == "gaussian" and lk.name == "identity"
    if n_blocks is None:
        n_blocks = 1 if gaussian_identity else block_count(n)
    perm: np.ndarray | None
    if gaussian_identity and n_blocks <= 1:
        # REML in one block computes the cross-products of [Z, X, y] once, per level by weighted counts: a sort of
        # the rows (and a gathered copy of the design) would cost more than it saves
        perm, specs = np.arange(n), [BlockSpec(slice(0, n), [np.arange(b.n_levels) for b in blocks])]
    else:
        perm, specs = cut_blocks(blocks, max(1, int(n_blocks)))
    if not _is_identity(perm):
        mf = _permuted(mf, perm)
        pw = pw if mf.weights is None else np.take(pw, perm)
        off = off if mf.offset is None else np.take(off, perm)
        blocks = merge_terms(mf.terms)
        own_design = True
    else:
        perm = None
    fam, data = _with_parts(fam, mf)
    if data is not None and int(model.get("nagq", 1)) > 1:
        raise GlmmInputError("nagq > 1 (adaptive quadrature) is not available for a model with a zero or dispersion "
                             "model or a hurdle family (glmmTMB has the Laplace approximation only): use nagq 1")
    X = np.asarray(mf.X, dtype=float)
    own_design = own_design and X is mf.X and X.flags.writeable
    # the separation check reads the design's two-valued columns: taken before the design is scaled in place
    binary = _design_columns(list(mf.x_names), X, mf.y) if fam.bounded_mean else None
    with one_blas_thread():  # BLAS threads on a tall, thin product cost more than they save (1M x 3: 30x)
        Xs, T, names, dropped = scaled_design(X, list(mf.x_names), progress, in_place=own_design)
    del X
    warnings = list(mf.warnings)
    if dropped:
        warnings.append(rank_deficient_warning(dropped))
    st = Structure(blocks)
    st.start_at(theta_start)
    try:
        with np.errstate(all="ignore"), one_blas_thread():
            if data is not None and mf.parts and mf.parts.get("zi_terms"):
                fields = fit_joint(st, Xs, T, names, mf, pw, off, fam, lk, model, progress, data,
                                   mf.parts["zi_terms"])
            elif fam.name == "gaussian" and lk.name == "identity" and data is None:
                fields = _fit_reml(st, Xs, T, names, mf, pw, off, model, progress, specs)
            elif fam.name == "ordinal":  # cumulative-link models: their thresholds, start and results
                from glmmlab.engine.solvers.ordinal_fit import fit_ordinal

                fields = fit_ordinal(st, Xs, T, names, mf, pw, off, fam, lk, model,  # type: ignore[arg-type]
                                     progress, specs)
            else:
                fields = _fit_laplace(st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, specs, binary,
                                      data)
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        raise GlmmInputError(
            f"the fit broke down numerically ({exc}): the data may not suit the {fam.name} family with the "
            f"{lk.name} link, or the random-effects terms may ask more than the data can tell. Check the "
            "response and predictors, simplify the random effects, or try another link"
        ) from None
    out = record(fields, warnings, dropped, perm)  # per-row results back in the frame's order
    report(progress, "Done", 1.0)
    return out


def _design_columns(names: list[str], X: np.ndarray, y: np.ndarray) -> list[list[dict | None]]:
    """:func:`advice.design_columns` of runs of X's rows (its ``parts``), a large design's in threads, one run per
    core (the separation check pools them as it pools the Dask path's partitions)."""
    runs = row_slices(X.shape[0], cpu_count()) if X.shape[0] >= THREADED_ROWS else [slice(0, X.shape[0])]
    return in_threads(lambda r: advice.design_columns(names, X[r], y[r]), runs)


def _with_parts(fam: Family, mf: ModelFrame) -> tuple[Family, dict | None]:
    """The family with the frame's zero and dispersion models (a hurdle family always has its zero model, which
    may be absent: a zero-truncated count), and those models' per-row designs; (fam, None) for neither."""
    parts = mf.parts
    if parts is None and fam.name not in HURDLE_BASE:
        return fam, None
    parts = parts or {}
    out = modelled_family(fam, parts.get("zi_names"), parts.get("disp_names"))
    out.check_response(mf.y, mf.response)
    data = {"zi_X": parts.get("zi_X"), "zi_off": parts.get("zi_off"), "disp_X": parts.get("disp_X")}
    if out.n_disp and data["disp_X"] is None:
        data["disp_X"] = np.ones((mf.n, 1))
    return out, data


def _is_identity(perm: np.ndarray) -> bool:
    """Whether a permutation of 0..n-1 leaves every row where it is (strictly increasing), in one pass."""
    return perm.size < 2 or bool(np.all(perm[1:] > perm[:-1]))


def _permuted(mf: ModelFrame, perm: np.ndarray) -> ModelFrame:
    from dataclasses import replace

    def take(a):  # np.take gathers rows of a matrix 2-3x faster than a[perm]
        return np.take(np.asarray(a), perm, axis=0)

    def term(t):  # every field kept (a covariance structure too), the rows permuted
        return replace(t, codes=take(t.codes), Z=t.Z if t.Z.strides[0] == 0 else take(t.Z))

    terms = [term(t) for t in mf.terms]
    parts = None if mf.parts is None else {
        k: take(v) if isinstance(v, np.ndarray) else [term(t) for t in v] if k.endswith("_terms") else v
        for k, v in mf.parts.items()}
    return replace(mf, y=take(mf.y), X=take(mf.X), rows=take(mf.rows), terms=terms, parts=parts,
                   weights=None if mf.weights is None else take(mf.weights),
                   offset=None if mf.offset is None else take(mf.offset))
