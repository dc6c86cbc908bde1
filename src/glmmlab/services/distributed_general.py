"""General mixed models on a Dask DataFrame: any random-effects part whose grouping factors nest (one factor,
``(1 + x | g)``, ``(x || g)``, or ``(1 | a/b)``), fitted as in memory (:mod:`glmmlab.engine.general`).

When every factor nests in one outer factor, the modes of one outer group depend only on its own rows, so the
Laplace deviance and its gradient are sums over blocks of whole outer groups (:class:`BlockedLaplace`), and so
are the parts of the profiled REML criterion of a Gaussian identity model (:class:`BlockedProfiledLmm`: each
block's log-determinant and reduced cross-products of [X, y]). Here the blocks are Dask actors:

1. one pass over the partitions builds each partition's model frame (the in-memory checks and messages), counts
   the rows used, collects the distinct grouping values on those rows and the R factor of the partition's X;
   the driver turns the distinct values into the global levels (the same code as in memory, so the same order),
   checks that the factors nest, and takes the scaling T of the fixed effects from the stacked R factors;
2. the rows used are shuffled once so that each outer group lives in one partition, and each partition becomes
   an actor holding its rows' model frame and a :class:`GeneralLaplace` block (REML: a :class:`ProfiledLmm`
   block, whose cross-products are computed once on the worker, of the response centred on the least-squares
   fit that the driver solves from the actors' summed normal equations), on local levels with the global T;
3. the in-memory driver (:func:`glmmlab.engine.general._laplace_run`, resp. ``_reml_run``) runs unchanged
   against an adapter that sends (theta, beta), resp. theta, to every actor and adds up their small sums.

The GLM start values and the per-row results need the rows' response, weights and scaled design on the driver
(p + 3 numbers per row, as the per-row results the fit returns anyway; REML needs no design there, and each
actor returns its rows' X beta and random-effects contribution at the optimum); the modes, the Laplace sums,
the cross-products and the conditional covariances stay on the workers.

Fixed parts built row by row are supported: numeric columns, ``I()``, ``log()``, ``exp()``, ``sqrt()``,
products and interactions of numeric columns, offsets, weights, ``cbind()``. Fixed factors and ``scale()`` need
the whole data's levels or moments; they are refused with a message saying to fit in memory. Crossed factors
couple every row and are refused too.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Optional

import numpy as np
import pandas as pd

from glmmlab.engine.blocked import Structure, check_coupled_size
from glmmlab.engine.blocks import one_blas_thread
from glmmlab.engine.design import rank_deficient_warning
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families import negbin_family
from glmmlab.engine.fit import nondefault_options, validate_options
from glmmlab.engine.formula import BinOp, Call, Expr, Paren, Unary, parse_formula
from glmmlab.engine.general import (
    GeneralLaplace,
    Likelihood,
    ProfiledLmm,
    _check_nagq,
    _laplace_run,
    _reml_run,
    design_scaling,
    glm_irls,
    inside_start,
    negbin_glm,
)
from glmmlab.engine.general_blocks import (
    BlockedLaplace,
    BlockedProfiledLmm,
    BlockSpec,
    centring_fit,
    normal_equations,
    outer_factor,
)
from glmmlab.engine.options import OPTIONS
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.results import GlmmResult
from glmmlab.engine.terms import FactorBlock, ModelFrame, merge_terms
from glmmlab.services.distributed import BLOCK_ROWS, on_client, release_unused_memory
from glmmlab.services.modelframe import build_model_frame, grouping_levels, plain_columns
from glmmlab.services.prediction import blups_by_component, make_predictor

ROW = "__glmmlab_row__"
OUTER = "__glmmlab_outer__"
IN_MEMORY = "fit in memory (a pandas, polars or Arrow table)"


# -- what runs on Dask -------------------------------------------------------------------------------------
def _walk(e: Expr):
    yield e
    if isinstance(e, Call):
        for a in e.args:
            yield from _walk(a)
    elif isinstance(e, BinOp):
        yield from _walk(e.left)
        yield from _walk(e.right)
    elif isinstance(e, Unary):
        yield from _walk(e.operand)
    elif isinstance(e, Paren):
        yield from _walk(e.inner)


def _check_supported(formula: str, meta: pd.DataFrame, family: str, weights, offset) -> ModelFrame:
    """Refuse what needs the whole data before any pass; return the model frame of the (empty) meta frame."""
    f = parse_formula(formula)
    exprs = ([f.response] if f.response is not None else []) + list(f.fixed.variables) + list(f.fixed.offsets)
    for r in f.random:
        exprs += list(r.lhs.variables) + list(r.group)
    scaled = sorted({e.deparse() for x in exprs for e in _walk(x) if isinstance(e, Call) and e.fn == "scale"})
    if scaled:
        raise GlmmInputError(
            f"{', '.join(scaled)} in the formula needs the mean and SD of the whole data, which a Dask "
            f"DataFrame does not give in one place; centre and scale the column beforehand, or {IN_MEMORY}")
    mf0 = build_model_frame(meta, formula, family=family, weights=weights, offset=offset, whole=False)
    factors = [v.deparse() for v in mf0.recipe.levels]
    if factors:
        raise GlmmInputError(
            f"on a Dask DataFrame the fixed part and the random terms' columns must be numeric; "
            f"{', '.join(repr(x) for x in factors)} {'is a factor' if len(factors) == 1 else 'are factors'}, "
            f"whose coding needs the whole data's levels. Recode as 0/1 columns, or {IN_MEMORY}")
    resp = f.response
    if resp is not None and not (isinstance(resp, Call) and resp.fn == "cbind"):
        names = resp.names()
        if any(mf0.recipe.column_kinds.get(n) == "factor" and not pd.api.types.is_bool_dtype(meta[n])
               for n in names):
            raise GlmmInputError(
                f"the response {f.response_label!r} is text or a factor; on a Dask DataFrame give it as 0/1 "
                f"numbers or booleans, or {IN_MEMORY}")
    for r in f.random:
        for g in r.group:
            for n in g.names():
                dt = meta[n].dtype
                if isinstance(dt, pd.CategoricalDtype) and not _known(dt):
                    raise GlmmInputError(
                        f"the grouping column {n!r} is categorical with unknown categories; make them known "
                        f"(ddf[{n!r}] = ddf[{n!r}].cat.as_known()) or use a text or number column")
    return mf0


def _known(dt) -> bool:
    from dask.dataframe.utils import has_known_categories

    return has_known_categories(pd.Series(dtype=dt))


def _group_columns(formula: str) -> list[str]:
    out: list[str] = []
    for r in parse_formula(formula).random:
        for g in r.group:
            out += [n for n in g.names() if n not in out]
    return out


# -- pass 1 ------------------------------------------------------------------------------------------------
def _summary(part: pd.DataFrame, formula: str, family: str, weights, offset, gcols: list[str]) -> dict:
    try:
        mf = build_model_frame(part, formula, family=family, weights=weights, offset=offset, whole=False)
    except GlmmInputError as exc:  # the driver says which partition (row numbers and counts are within it)
        return {"error": str(exc)}
    out = {"n_input": len(part), "n": mf.n, "warnings": list(mf.warnings), "x_names": list(mf.x_names),
           "distinct": part.iloc[mf.rows][gcols].drop_duplicates(), "R": None, "w_min": None}
    if mf.n:
        out["R"] = np.linalg.qr(mf.X, mode="r")
        if mf.weights is not None:
            out["w_min"] = float(np.min(mf.weights))
    return out


def _coded(part: pd.DataFrame, formula: str, family: str, weights, offset, cols: list[str], outer: str,
           outer_levels: pd.Index, offsets: np.ndarray, partition_info: dict | None = None) -> pd.DataFrame:
    """The rows used, with their input row numbers and their outer group's global code."""
    number = partition_info["number"] if partition_info else 0
    mf = build_model_frame(part, formula, family=family, weights=weights, offset=offset, whole=False)
    out = part.iloc[mf.rows][cols].copy()
    out[ROW] = offsets[number] + np.asarray(mf.rows, dtype=np.int64)
    term = next((t for t in mf.terms if t.component == outer), None)
    codes = np.zeros(mf.n, dtype=np.int64)
    if term is not None and mf.n:
        codes = outer_levels.get_indexer(term.levels)[np.asarray(term.codes)]
    out[OUTER] = codes.astype(np.int64)
    return out


# -- the block actors ----------------------------------------------------------------------------------------
class GeneralBlockActor:
    """A block of whole outer groups, built on a worker from one partition of the shuffled rows: its model
    frame, its factor blocks on local levels (in the global order of blocks and levels) and a GeneralLaplace,
    or for a Gaussian identity model a ProfiledLmm (REML)."""

    def __init__(self, part: pd.DataFrame, spec: dict):
        part = part.sort_values(ROW, kind="stable")
        rows = part[ROW].to_numpy()
        mf = build_model_frame(part.drop(columns=[ROW, OUTER]), spec["formula"], family=spec["family"],
                               weights=spec["weights"], offset=spec["offset"], whole=False)
        fam, lk = validate_options(spec["family"], spec["link"], 0.95, 100, 1e-6, 1, "working")
        local = {b.component: b for b in merge_terms(mf.terms)}
        gcodes, maps = [], []
        for comp in spec["order"]:
            b = local[comp]
            glob = pd.Index(spec["levels"][comp]).get_indexer(b.levels)
            gc = glob[np.asarray(b.codes)]
            gcodes.append(gc)
            maps.append(np.unique(gc))
        perm = np.lexsort((rows, gcodes[0], gcodes[spec["outer"]]))
        blocks = []
        for comp, gc, lmap in zip(spec["order"], gcodes, maps):
            b = local[comp]
            blocks.append(FactorBlock(comp, np.searchsorted(lmap, gc[perm]), [spec["levels"][comp][i] for i in lmap],
                                      np.ascontiguousarray(b.Z[perm]), b.names, b.groups))
        n = mf.n
        Xs = np.asarray(mf.X, dtype=float)[perm][:, spec["keep"]] @ spec["T"]
        pw = np.ones(n) if mf.weights is None else np.asarray(mf.weights, dtype=float)[perm]
        off = np.zeros(n) if mf.offset is None else np.asarray(mf.offset, dtype=float)[perm]
        y = np.asarray(mf.y, dtype=float)[perm]
        self.rows, self.level_maps = rows[perm], maps
        self.y, self.pw, self.off = y, pw, off
        self.reml = fam.name == "gaussian" and lk.name == "identity"
        self.st = Structure(blocks)
        check_coupled_size(self.st)  # before the first evaluation on this worker
        self.block: GeneralLaplace | ProfiledLmm
        if self.reml:  # the ProfiledLmm comes with the centring fit of every block's rows (centre)
            self.Xs = Xs
            self.normal = normal_equations(Xs, y - off, pw)
        else:
            self.block = self.lap = GeneralLaplace(self.st, Xs, y, pw, off, fam, lk, spec["dispersion"])
        del part, mf
        release_unused_memory()

    def info(self) -> dict:
        """The rows' input numbers, response, weights and offset, the block's levels, and the scaled design (for
        the Laplace path's GLM start) or the normal equations (for REML's centring fit)."""
        out = {"rows": self.rows, "y": self.y, "pw": self.pw, "off": self.off, "level_maps": self.level_maps,
               "sizes": [b.n_levels for b in self.st.blocks]}
        if self.reml:
            out["normal"] = self.normal
        else:
            out["Xs"] = self.lap.Xs
        return out

    def centre(self, beta0) -> None:
        """REML: the block's cross-products of [Z, X_s, y - offset - X_s beta0] (one pass over its rows)."""
        with np.errstate(all="ignore"), one_blas_thread():
            self.block = self.prof = ProfiledLmm(self.st, self.Xs, self.y - self.off, self.pw, beta0)
        del self.Xs

    def set_family(self, parameter: float) -> None:
        self.lap.set_family(negbin_family(parameter))

    def parts(self, theta, beta, gradient: bool) -> dict:
        with np.errstate(all="ignore"), one_blas_thread():
            return self.lap.parts(theta, beta, gradient)

    def sums(self, theta) -> dict:
        with np.errstate(all="ignore"), one_blas_thread():
            return self.prof.sums(theta)

    def final(self, *args) -> dict:
        """Laplace: (theta, beta); REML: (theta, beta_s)."""
        with np.errstate(all="ignore"), one_blas_thread():
            return self.block.final(*args)

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


class _Block:
    """The driver's view of one actor, as BlockedLaplace sees a block: its local structure (levels only, no
    rows), its current family, and methods that return futures."""

    def __init__(self, actor, st: Structure, fam):
        self.actor, self.st, self.fam = actor, st, fam

    def parts(self, theta, beta, gradient):
        return self.actor.parts(theta, beta, gradient)

    def sums(self, theta):
        return self.actor.sums(theta)

    def final(self, *args):
        return self.actor.final(*args)

    def agq(self, theta, beta, z, wq, phi=None):
        return self.actor.agq(theta, beta, z, wq, phi)

    def deviance_at_modes(self):
        return self.actor.deviance_at_modes()

    def fixed_precision(self, theta, beta):
        return self.actor.fixed_precision(theta, beta)

    def reset_modes(self):
        return self.actor.reset_modes()


class _OnActors:
    """``map`` for blocks that are Dask actors: the same call goes to every block, then the answers are
    gathered (the actors work at the same time)."""

    units: list

    def map(self, fn):
        futures = [fn(unit) for unit in self.units]
        return [f.result() for f in futures]


class ActorProfiledLmm(_OnActors, BlockedProfiledLmm):
    """BlockedProfiledLmm over Dask actors."""

    def __init__(self, blocks: list[_Block], n: int, sum_log_w: float, beta0: np.ndarray):
        super().__init__(blocks, n, sum_log_w, beta0, threads=False)


class ActorLaplace(_OnActors, BlockedLaplace):
    """BlockedLaplace over Dask actors."""

    def __init__(self, laps: list[_Block], lik, nt: int):
        super().__init__(laps, lik, nt, threads=False)

    def set_family(self, fam, lik) -> None:
        for f in [lap.actor.set_family(float(fam.parameter)) for lap in self.laps]:
            f.result()
        for lap in self.laps:
            lap.fam = fam
        self.lik = lik


def _skeleton(blocks: list[FactorBlock], sizes: list[int], levels: list[list[str]] | None = None) -> Structure:
    """A Structure with the blocks' shapes and no rows (what the driver needs of it: theta, u, levels)."""
    out = []
    for b, nl, k in zip(blocks, sizes, range(len(blocks))):
        lv = levels[k] if levels is not None else [""] * nl
        out.append(FactorBlock(b.component, np.zeros(0, dtype=np.int64), lv, np.zeros((0, b.q)), b.names, b.groups))
    return Structure(out)


# -- the driver ----------------------------------------------------------------------------------------------
def fit_formula_dask(
    data: Any,
    formula: str,
    *,
    family: str = "gaussian",
    link: Optional[str] = None,
    weights: Optional[str] = None,
    offset: Optional[str] = None,
    conf_level: float = 0.95,
    max_iter: int = 100,
    tol: float = 1e-6,
    nagq: int = 1,
    se: str = "working",
    dispersion: str = "estimated",
    progress: ProgressFn = None,
    client: Any = None,
    scheduler: Optional[str] = None,
    npartitions: Optional[int] = None,
) -> GlmmResult:
    """Fit an lme4 formula whose grouping factors nest to a Dask DataFrame (see the module docstring)."""
    if client is None:
        return on_client(scheduler, lambda c: fit_formula_dask(
            data, formula, family=family, link=link, weights=weights, offset=offset, conf_level=conf_level,
            max_iter=max_iter, tol=tol, nagq=nagq, se=se, dispersion=dispersion, progress=progress, client=c,
            npartitions=npartitions))
    fam, lk = validate_options(family, link, conf_level, max_iter, tol, nagq, se)
    dispersion = OPTIONS["dispersion"].check(dispersion)
    if not isinstance(formula, str) or not formula.strip():
        raise GlmmInputError("formula must be text such as 'y ~ x + (1 | g)'")
    for option, col in (("weights", weights), ("offset", offset)):
        if col is not None and col not in data.columns:
            raise GlmmInputError(f"{option} column '{col}' is not in the data; columns are: "
                                 + ", ".join(map(str, list(data.columns)[:20])))
    start = time.perf_counter()
    meta = data._meta
    mf0 = _check_supported(formula, meta, fam.name, weights, offset)
    if not mf0.terms:  # pragma: no cover - the parser and the model frame require a random term
        raise GlmmInputError(f"the formula {formula.strip()!r} has no random-effects term")
    shapes = merge_terms(mf0.terms)  # names, q and theta layout of each factor; levels come from the data
    _check_nagq(shapes, int(nagq))
    cols = list(dict.fromkeys(parse_formula(formula).columns() + [c for c in (weights, offset) if c is not None]))
    gcols = _group_columns(formula)
    ddf = data[cols]

    report(progress, "Pass 1 of 2 over the data: checking columns and collecting groups", 0.0)
    import dask

    summaries = client.compute([dask.delayed(_summary)(p, formula, fam.name, weights, offset, gcols)
                                for p in ddf.to_delayed()], sync=True)
    for k, s in enumerate(summaries):
        if "error" in s:
            raise GlmmInputError(f"{s['error']} [rows counted and numbered within partition {k} of the Dask "
                                 "DataFrame]")
    n_input = sum(s["n_input"] for s in summaries)
    n = sum(s["n"] for s in summaries)
    if n == 0:
        build_model_frame(meta, formula, family=fam.name, weights=weights, offset=offset)  # raises the message
    full = [s for s in summaries if s["n"]]
    x_names = full[0]["x_names"]
    warnings: list[str] = []
    for s in summaries:
        warnings += [w for w in s["warnings"] if w not in warnings]
    if weights is not None and min(s["w_min"] for s in full) <= 0:
        raise GlmmInputError("weights must be positive for every row used; drop rows with weight 0 first")

    # the global levels, in build_model_frame's order, from the distinct grouping values on the rows used
    distinct = pd.concat([s["distinct"] for s in full], ignore_index=True).drop_duplicates(ignore_index=True)
    coded = grouping_levels(distinct, formula)
    f = parse_formula(formula)
    for r in f.random:
        nl = len(coded[r.component][1])
        if nl < 2:
            raise GlmmInputError(
                f"the grouping factor {r.component!r} of {r.written} has only {nl} level on the rows used; "
                "grouping factors need two or more levels")
    shapes = sorted(shapes, key=lambda b: -len(coded[b.component][1]))  # merge_terms' order on the whole data
    order = [b.component for b in shapes]
    levels = {c: list(coded[c][1]) for c in order}
    probe = [FactorBlock(c, coded[c][0], levels[c], np.zeros((len(distinct), 0)), [], []) for c in order]
    outer = outer_factor(probe)
    if outer is None:
        raise GlmmInputError(_crossed_message(probe))

    keep, T, names, dropped = design_scaling(np.vstack([s["R"] for s in full]), n, list(x_names))
    if dropped:
        warnings.append(rank_deficient_warning(dropped))
    offsets = np.concatenate([[0], np.cumsum([s["n_input"] for s in summaries])[:-1]]).astype(np.int64)

    report(progress, "Pass 2 of 2: arranging rows so that each outer group lives in one partition", 0.02)
    outer_name = order[outer]
    cmeta = meta[cols].iloc[:0].copy()
    cmeta[ROW] = pd.Series(dtype=np.int64)
    cmeta[OUTER] = pd.Series(dtype=np.int64)
    coded_rows = ddf.map_partitions(_coded, formula, fam.name, weights, offset, cols, outer_name,
                                    pd.Index(levels[outer_name]), offsets, meta=cmeta)
    n_outer = len(levels[outer_name])
    nparts = npartitions or max(1, min(max(ddf.npartitions, n // BLOCK_ROWS + 1), n_outer))
    shuffled = client.persist(coded_rows.shuffle(OUTER, npartitions=nparts))
    lengths = client.compute(shuffled.map_partitions(len), sync=True)
    parts = [p for p, k in zip(client.futures_of(shuffled), lengths) if k > 0]
    del shuffled, coded_rows
    spec = {"formula": formula, "family": fam.name, "link": lk.name, "weights": weights, "offset": offset,
            "dispersion": dispersion,
            "order": order, "levels": levels, "outer": outer, "keep": keep, "T": T}
    report(progress, f"Loading {len(parts)} blocks of whole groups on the workers", 0.04)
    actors = []
    while parts:
        part = parts.pop(0)
        actors.append(client.submit(GeneralBlockActor, part, spec, actor=True).result())
        del part
    client.run(release_unused_memory)

    infos = [a.info().result() for a in actors]
    # the blocks' rows concatenated in block order
    rows, y, pw, off = (np.concatenate([i[key] for i in infos]) for key in ("rows", "y", "pw", "off"))
    reml = fam.name == "gaussian" and lk.name == "identity"
    Xs = None if reml else np.concatenate([i["Xs"] for i in infos])
    specs = [BlockSpec(slice(0, 0), i["level_maps"]) for i in infos]
    st = _skeleton(shapes, [len(levels[c]) for c in order], [levels[c] for c in order])
    laps = [_Block(a, _skeleton(shapes, i["sizes"]), fam) for a, i in zip(actors, infos)]
    normals = [i["normal"] for i in infos] if reml else []
    del infos
    mf = ModelFrame(response=mf0.response, y=y, X=np.zeros((n, 0)), x_names=list(x_names), terms=[], rows=rows,
                    n_input=n_input, weights=pw, offset=off, intercept=mf0.intercept, formula=formula,
                    warnings=list(warnings), recipe=None)
    fixed_cols, group_col = plain_columns(formula, meta)
    model = {
        "response": mf0.response, "fixed": fixed_cols, "group": group_col, "family": fam.name, "link": lk.name,
        "intercept": bool(mf0.intercept), "conf_level": float(conf_level), "nagq": int(nagq),
        "max_iter": int(max_iter), "tol": float(tol), "formula": formula.strip(), "weights": weights,
        "offset": offset, **nondefault_options(True, "none", dispersion),
    }
    try:
        with np.errstate(all="ignore"), one_blas_thread():
            if Xs is None:  # REML: every block centres the response on the whole data's least-squares fit
                beta0 = centring_fit(sum(normals))
                for f in [a.centre(beta0) for a in actors]:
                    f.result()
                out = _reml_run(ActorProfiledLmm(laps, n, float(np.sum(np.log(pw))), beta0), specs, st, T, names,
                                mf, pw, off, model, progress)
            else:
                report(progress, "Initial values (GLM)", 0.05)
                negbin = fam.name == "negbin"
                nb0: float | None
                glm_m2: float | None
                if negbin:
                    beta0, nb0, glm_m2 = negbin_glm(Xs, y, pw, off, lk)
                    fam = negbin_family(nb0)
                    glm_dev = None
                else:
                    beta0, glm_dev = glm_irls(Xs, y, pw, off, fam, lk)
                    nb0 = glm_m2 = None
                beta0 = inside_start(Xs, y, pw, off, beta0, fam, lk)
                p = Xs.shape[1]
                del Xs
                obj = ActorLaplace(laps, Likelihood(fam, y, pw, dispersion), st.n_theta)
                if negbin:
                    obj.set_family(fam, Likelihood(fam, y, pw))
                out = _laplace_run(obj, specs, st, np.zeros((0, p)), T, names, mf, pw, off, fam, lk, model, se,
                                   progress, beta0, nb0, glm_m2, glm_dev)
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        raise GlmmInputError(
            f"the fit broke down numerically ({exc}): the data may not suit the {fam.name} family with the "
            f"{lk.name} link, or the random-effects terms may ask more than the data can tell. Check the "
            "response and predictors, simplify the random effects, or try another link") from None
    finally:  # the actors end when the last handle goes
        laps.clear()
        actors.clear()
    out.warnings[:0] = [w for w in warnings if w not in out.warnings]
    out.dropped = dropped
    back = np.argsort(rows, kind="stable")  # per-row results in input order
    for name in ("rows", "fitted", "deviance_residuals", "pearson_residuals", "row_random_effect"):
        setattr(out, name, np.asarray(getattr(out, name))[back])
    recipe = replace(mf0.recipe, terms=tuple(replace(t, levels=tuple(levels[t.component]))
                                             for t in mf0.recipe.terms))
    out.predictor = make_predictor(recipe, list(out.names), np.asarray(out.beta), blups_by_component(out))
    out.fit_seconds = time.perf_counter() - start
    report(progress, "Done", 1.0)
    return out


def _crossed_message(blocks: list[FactorBlock]) -> str:
    pairs = []
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            if outer_factor([a, b]) is None:
                pairs.append(f"{a.component!r} and {b.component!r}")
    which = "; ".join(pairs) if pairs else ", ".join(repr(b.component) for b in blocks)
    return (f"the grouping factors {which} cross (neither nests in the other), so every row is coupled to every "
            "other and the rows cannot be cut into blocks of whole groups. On a Dask DataFrame glmmlab fits "
            "models whose grouping factors nest, such as (1 + x | g) or (1 | a/b); fit crossed models "
            f"{IN_MEMORY[4:]}")



def read_parquet_lazily(path: str) -> Any:
    """A Parquet file or directory as a Dask DataFrame (only the columns a fit selects are ever loaded), for
    ``glmmlab fit DATA.parquet --formula ... --engine dask``."""
    import dask.dataframe as dd

    try:
        return dd.read_parquet(path)
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GlmmInputError(f"cannot read Parquet data '{path}': {first}") from None
