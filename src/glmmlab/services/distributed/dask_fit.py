"""Mixed models on a Dask DataFrame: any random-effects part whose grouping factors nest (one factor, ``(1 | g)``,
``(1 + x | g)``, ``(x || g)``, or ``(1 | a/b)``), or cross, fitted as in memory (:mod:`glmmlab.engine.solvers`).

When every factor nests in one outer factor, the modes of one outer group depend only on its own rows, so the
Laplace deviance and its gradient are sums over blocks of whole outer groups (:class:`BlockedLaplace`), and so
are the parts of the profiled REML criterion of a Gaussian identity model (:class:`BlockedProfiledLmm`: each
block's log-determinant and reduced cross-products of [X, y]). Here the blocks are Dask actors:

1. one pass over the partitions builds each partition's model frame (the in-memory checks and messages), counts
   the rows used, collects the distinct grouping values on those rows, the R factor of the partition's X, the
   response's moments and, for the binomial, what the separation check needs of each column; the driver turns
   the distinct values into the global levels (the same code as in memory, so the same order), checks that the
   factors nest, and takes the scaling T of the fixed effects from the stacked R factors;
2. the rows used are shuffled once so that each outer group lives in one partition, and each partition becomes
   an actor holding its rows' scaled design, response, weights and offset and a :class:`GeneralLaplace` block
   (REML: a :class:`ProfiledLmm` block, whose cross-products are computed once on the worker, of the response
   centred on the least-squares fit that the driver solves from the actors' summed normal equations), on local
   levels with the global T;
3. the in-memory driver (:func:`glmmlab.engine.solvers.laplace_fit._laplace_run`, resp. ``_reml_run``) runs unchanged
   against an adapter that sends (theta, beta), resp. theta, to every actor and adds up their small sums.

No row leaves the workers before the end: the GLM start is IRLS on the actors' summed X'WX, X'Wz and deviances
(:func:`glmmlab.engine.solvers.glm_start.irls`), the moment start of a random intercept's theta and the likelihood's
constants are sums over the actors, and at the optimum each actor computes its rows' fitted values, residuals
and random-effects contributions, which the driver gathers once, in input order (the per-row arrays of the
result). Above :data:`LEAN_ROWS` rows the actors hold the scaled design in float32 (every product with it is
float64) and keep nothing per row between evaluations (no predicted modes), as few bytes a row as the data need.

Two ways to say the model: a formula (:func:`fit_formula_dask`: the fixed part built row by row: numeric
columns, ``I()``, ``log()``, ``exp()``, ``sqrt()``, products and interactions, offsets, weights, ``cbind()``; fixed
factors and ``scale()`` by the whole data's levels and moments, computed in one pass before pass 1
(:mod:`~glmmlab.services.distributed.whole_data`)), or the random-intercept form ``response ~ fixed + (1 | group)``
over numeric columns (:func:`fit_columns_on_dask`, as ``fit_glmm`` in memory: rows with a missing, non-numeric or
infinite value left out, a predictor constant on the rows used dropped by name). Factors in random terms and
``scale()`` outside the fixed part are refused with a message saying to fit in memory.

Crossed (or partially crossed) factors couple every row through the other factors' levels: the rows are then cut
by the leading factor (the one with the most levels), the other factors keep their global levels on every actor,
and each factor of the penalised system is reduced on the driver from the actors' parts
(:mod:`~glmmlab.services.distributed.coupled`): REML by :class:`CoupledLmm` (one reduction per theta), the Laplace
approximation by :class:`CoupledUnit` (one per step of the mode search, of the log-determinant and of the
gradient's solves). Up to :data:`~glmmlab.services.distributed.coupled.COUPLED_LEVELS` coupled random effects;
beyond, a message before the rows move.

This module is the driver. What it runs on the workers and talks to lives beside it:
:mod:`~glmmlab.services.distributed.partitions` (a partition's rows as a model frame, what is refused before any
pass, pass 1's summary and the rows coded for the shuffle), :mod:`~glmmlab.services.distributed.block_actor` (the
actor a block of whole groups is on a worker) and :mod:`~glmmlab.services.distributed.actor_adapters` (the actors
seen as the in-memory driver's blocks and rows), and for crossed factors
:mod:`~glmmlab.services.distributed.coupled_block` (a block's steps on a worker) and
:mod:`~glmmlab.services.distributed.coupled_fit` (the driver's objectives over them).
"""

from __future__ import annotations

import gc
import time
import traceback
from contextlib import suppress
from dataclasses import replace
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import linalg

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family, negbin_family
from glmmlab.engine.families.links import Link
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.design import check_not_constant, constant_column_warning, rank_deficient_warning
from glmmlab.engine.model.formula import Formula, parse_formula
from glmmlab.engine.model.options import OPTIONS, check_options, nondefault_options
from glmmlab.engine.model.terms import FactorBlock, ModelFrame, merge_terms
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.assemble import record
from glmmlab.engine.solvers.fit import _check_nagq, check_response_mean
from glmmlab.engine.solvers.glm_start import negbin_profile
from glmmlab.engine.solvers.laplace_fit import _laplace_run
from glmmlab.engine.solvers.reml import _reml_run
from glmmlab.engine.solvers.row_blocks import BlockSpec, centring_fit, outer_factor
from glmmlab.engine.solvers.scaling import design_scaling
from glmmlab.engine.solvers.structure import check_coupled_size
from glmmlab.engine.solvers.threads import one_blas_thread
from glmmlab.services.distributed.actor_adapters import (
    ActorBlock,
    ActorLaplace,
    ActorProfiledLmm,
    ActorRows,
    DriverFrame,
    skeleton,
)
from glmmlab.services.distributed.block_actor import GeneralBlockActor
from glmmlab.services.distributed.cluster import on_client, release_unused_memory, reuse_freed_memory
from glmmlab.services.distributed.coupled import check_coupled_levels
from glmmlab.services.distributed.coupled_fit import CoupledLaplace, CoupledLmm, CoupledUnit
from glmmlab.services.distributed.partitions import (
    OUTER,
    ROW,
    ColumnRows,
    FormulaRows,
    check_supported,
    code_outer_groups,
    summarise_partition,
)
from glmmlab.services.distributed.pulse import Pulse, wait_for
from glmmlab.services.distributed.whole_data import summarise_levels, whole_data
from glmmlab.services.modeling import frames
from glmmlab.services.modeling.fitted import FittedModel

BLOCK_ROWS = 1_000_000  # rows per block: keeps each evaluation's temporary arrays small on the workers
LEAN_ROWS = 5_000_000  # above this many rows the actors hold the design in float32 and keep no per-row state


def _square_root(G: np.ndarray) -> np.ndarray:
    """A matrix A with A'A = G, for a Gram matrix G = X'X summed over blocks of rows (the collinearity test and the
    scaling T come from it, as in memory from X's own Gram matrix): by the eigen-decomposition of G scaled to a
    unit diagonal, so that columns of any scale are alike; singular where G is."""
    d = 1.0 / np.sqrt(np.maximum(np.diag(G), 1e-300))
    lam, V = linalg.eigh(G * d[:, None] * d[None, :])
    return (V * np.sqrt(np.maximum(lam, 0.0))).T / d[None, :]


def _pooled(parts: list[dict]) -> tuple[float, float]:
    """(mean, variance) of values known by blocks' (n, mean, sum of squared deviations) (Chan et al.)."""
    n, mean, m2 = 0, 0.0, 0.0
    for p in parts:
        delta, total = p["mean"] - mean, n + p["n"]
        mean += delta * p["n"] / total
        m2 += p["m2"] + delta * delta * n * p["n"] / total
        n = total
    return mean, m2 / n


# -- the driver ----------------------------------------------------------------------------------------------
def fit_formula_dask(
    data: Any,
    formula: "str | Formula | None",
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
    columns: "ColumnRows | None" = None,
) -> FittedModel:
    """Fit an lme4 formula to a Dask DataFrame (see the module docstring).
    ``columns``: the random-intercept form over numeric columns instead (:func:`fit_columns_on_dask`; ``formula``
    is then its formula, or None where the names cannot be written in one)."""
    if client is None:
        return on_client(scheduler, lambda c: fit_formula_dask(
            data, formula, family=family, link=link, weights=weights, offset=offset, conf_level=conf_level,
            max_iter=max_iter, tol=tol, nagq=nagq, se=se, dispersion=dispersion, progress=progress, client=c,
            npartitions=npartitions, columns=columns))
    fam, lk = check_options(family, link, conf_level, max_iter, tol, nagq, se, True, "auto")
    dispersion = OPTIONS["dispersion"].check(dispersion)
    start = time.perf_counter()
    rows_of: FormulaRows | ColumnRows
    if columns is None:
        from glmmlab.services.modeling.modelframe import plain_columns

        if not isinstance(formula, Formula) and (not isinstance(formula, str) or not formula.strip()):
            raise GlmmInputError("formula must be text such as 'y ~ x + (1 | g)'")
        formula = parse_formula(formula)  # once: the parsed formula goes to every pass and every worker
        for option, col in (("weights", weights), ("offset", offset)):
            if col is not None and col not in data.columns:
                raise GlmmInputError(f"{option} column '{col}' is not in the data; columns are: "
                                     + ", ".join(map(str, list(data.columns)[:20])))
        mf0 = check_supported(formula, data._meta, fam.name, weights, offset)
        if not mf0.terms:  # pragma: no cover - the parser and the model frame require a random term
            raise GlmmInputError(f"the formula {formula.text!r} has no random-effects term")
        factors = [v for v in mf0.recipe.levels if v in formula.fixed.variables]  # fixed factors: whole_data.py
        (fixed, group) = plain_columns(formula, data._meta)
        rows_of = FormulaRows(formula, fam.name, weights, offset, factors)
    else:  # no model frame: one scalar random intercept on the group column, the fixed columns as they are
        mf0 = ModelFrame(response=columns.response, y=np.zeros(0), X=np.zeros((0, 0)), x_names=columns.names,
                         terms=[], rows=np.zeros(0, dtype=np.int64), n_input=0, intercept=columns.intercept,
                         formula=(formula.text if isinstance(formula, Formula) else formula) or "")
        fixed, group, rows_of = list(columns.fixed), columns.group, columns
    text = formula.text if isinstance(formula, Formula) else formula.strip() if formula else None
    model = {
        "response": mf0.response, "fixed": fixed, "group": group, "family": fam.name, "link": lk.name,
        "intercept": bool(mf0.intercept), "conf_level": float(conf_level), "nagq": int(nagq),
        "max_iter": int(max_iter), "tol": float(tol), "formula": text,
        "weights": weights, "offset": offset, **nondefault_options(True, "none", dispersion),
    }
    out, levels = _fit(data, rows_of, mf0, fam, lk, model, se, dispersion, progress, client, npartitions)
    predictor = None
    if mf0.recipe is not None:  # a formula's design is rebuilt for new rows; the column form predicts from columns
        from glmmlab.services.modeling.prediction import blups_by_component, make_predictor

        base = rows_of.whole[0] if isinstance(rows_of, FormulaRows) and rows_of.whole is not None else mf0.recipe
        recipe = replace(base, terms=tuple(replace(t, levels=tuple(levels[t.component])) for t in base.terms))
        predictor = make_predictor(recipe, list(out.names), np.asarray(out.beta), blups_by_component(out))
    fitted = FittedModel.of(out, predictor=predictor, fit_seconds=time.perf_counter() - start)
    report(progress, "Done", 1.0)
    return fitted


def fit_columns_on_dask(data: Any, response: str, group: str, fixed: Optional[Sequence[str]] = None, *,
                        intercept: bool = True, **options: Any) -> FittedModel:
    """Fit the random-intercept form ``response ~ fixed + (1 | group)`` over numeric columns to a Dask DataFrame, as
    ``fit_glmm`` fits it in memory (see the module docstring); ``options``: those of :func:`fit_formula_dask` but
    ``weights`` and ``offset``."""
    from glmmlab.engine.model.spec import random_intercept_formula

    fixed = list(fixed or [])
    frames.check_columns(data.columns, None, response, group, fixed)
    try:
        formula: str | None = random_intercept_formula(response, group, fixed, intercept)
    except GlmmInputError:  # names a formula cannot hold: the document has no formula, as in memory
        formula = None
    return fit_formula_dask(data, formula, columns=ColumnRows(response, group, fixed, intercept), **options)


def _fit(data: Any, rows_of: FormulaRows | ColumnRows, mf0: ModelFrame, fam: Family, lk: Link, model: dict,
         se: str, dispersion: str, progress: ProgressFn, client: Any, npartitions: Optional[int]
         ) -> tuple[GlmmResult, dict[str, list[str]]]:
    """The two passes, the actors and the fit (see the module docstring): the result and each grouping factor's
    global levels. ``mf0``: the model frame of no rows (its terms give the random effects' shapes; none for the
    column form, whose one scalar random intercept is on the group column)."""
    import dask

    meta = data._meta
    if mf0.terms:  # names, q and theta layout of each factor; levels come from the data
        shapes = merge_terms(mf0.terms)
    else:
        assert isinstance(rows_of, ColumnRows)
        shapes = [FactorBlock(rows_of.group, np.zeros(0, dtype=np.int64), [], np.zeros((0, 1)), ["(Intercept)"],
                              [[0]])]
    _check_nagq(shapes, int(model["nagq"]))
    ddf = data[rows_of.columns]
    binomial = bool(fam.bounded_mean)
    pulse = Pulse(progress)  # the engine's reports go through it; it beats between round trips (cancel)

    if isinstance(rows_of, FormulaRows) and rows_of.needs_whole:
        step = pulse.step("Levels and moments: one pass over the data for the fixed factors and scale()", 0.0, 0.0)
        parts = wait_for(client, client.compute([dask.delayed(summarise_levels)(
            p, rows_of.rows_formula, rows_of.formula, fam.name, rows_of.weights, rows_of.offset,
            rows_of.factor_columns, rows_of.scales) for p in ddf.to_delayed()]), step, "partitions read")
        for k, s in enumerate(parts):
            if "error" in s:
                raise GlmmInputError(f"{s['error']} [rows counted and numbered within partition {k} of the Dask "
                                     "DataFrame]")
        rows_of.whole = whole_data(mf0.recipe, rows_of.formula, rows_of.factors, rows_of.scales, parts)
        del parts
    step = pulse.step("Pass 1 of 2 over the data: checking columns and collecting groups", 0.0, 0.01)
    summaries = wait_for(client, client.compute([dask.delayed(summarise_partition)(p, rows_of, binomial)
                                                 for p in ddf.to_delayed()]), step, "partitions read")
    client.run(release_unused_memory)
    for k, s in enumerate(summaries):
        if "error" in s:
            raise GlmmInputError(f"{s['error']} [rows counted and numbered within partition {k} of the Dask "
                                 "DataFrame]")
    if sum(s["n_input"] for s in summaries) == 0:
        raise GlmmInputError("the data have no rows")
    if isinstance(rows_of, ColumnRows):
        rows_of.refuse(summaries)
    n_input = sum(s["n_input"] for s in summaries)
    n = sum(s["n"] for s in summaries)
    if n == 0:
        rows_of.no_rows(meta)
    full = [s for s in summaries if s["n"]]
    ys = [s["y"] for s in full]
    y_mean, y_var = _pooled(ys)
    y = {"n": n, "mean": y_mean, "var": y_var, "sum_w": sum(v["sum_w"] for v in ys),
         "sum_wy": sum(v["sum_wy"] for v in ys), "sum_log_w": sum(v["sum_log_w"] for v in ys)}
    y_ends = np.array([min(v["min"] for v in ys), max(v["max"] for v in ys)])
    if isinstance(rows_of, ColumnRows):
        fam.check_response(y_ends, model["response"])  # the in-memory column form's check (no row numbers)
    check_not_constant(y_ends, model["response"])
    x_names = list(full[0]["x_names"])
    warnings: list[str] = []
    for s in summaries:
        warnings += [w for w in s["warnings"] if w not in warnings]
    if any(s["w_min"] is not None for s in full) and min(s["w_min"] for s in full) <= 0:
        raise GlmmInputError("weights must be positive for every row used; drop rows with weight 0 first")
    check_response_mean(y["sum_wy"] / y["sum_w"], fam, lk, model["response"])

    # the global levels, in the in-memory order, from the distinct grouping values on the rows used
    coded, n_distinct = rows_of.levels(full)
    shapes = sorted(shapes, key=lambda b: -len(coded[b.component][1]))  # merge_terms' order on the whole data
    order = [b.component for b in shapes]
    levels = {c: list(coded[c][1]) for c in order}
    probe = [FactorBlock(c, coded[c][0], levels[c], np.zeros((n_distinct, 0)), [], []) for c in order]
    nesting = outer_factor(probe)
    coupled = nesting is None  # crossed factors: rows cut by the leading factor, the coupled block reduced
    outer = 0 if nesting is None else nesting
    if coupled:
        check_coupled_levels([(c, len(levels[c]), b.q) for c, b in zip(order[1:], shapes[1:])],
                             (order[0], len(levels[order[0]])))
        check_coupled_size(skeleton(shapes, [len(levels[c]) for c in order]))  # the in-memory limit as well

    # the fixed-effects design: constant columns of the column form dropped by name, then the scaling T
    cols = list(range(len(x_names)))
    if isinstance(rows_of, ColumnRows):
        constant = rows_of.constant(full)
        warnings += [constant_column_warning(x_names[j]) for j in constant]
        cols = [j for j in cols if j not in constant]
    if not cols:
        raise GlmmInputError(
            "the model has no fixed effects: include the intercept or choose at least one usable fixed effect")
    gram = sum(s["gram"] for s in full)[np.ix_(cols, cols)]
    keep_c, T, names, dropped = design_scaling(_square_root(gram), n, [x_names[j] for j in cols])
    keep = [cols[j] for j in keep_c]
    if dropped:
        warnings.append(rank_deficient_warning(dropped))
    offsets = np.concatenate([[0], np.cumsum([s["n_input"] for s in summaries])[:-1]]).astype(np.int64)

    step = pulse.step("Pass 2 of 2: arranging rows so that each outer group lives in one partition", 0.01, 0.03)
    outer_name = order[outer]
    cmeta = meta[rows_of.shuffled].iloc[:0].copy()
    cmeta[ROW] = pd.Series(dtype=np.int64)
    cmeta[OUTER] = pd.Series(dtype=np.int64)
    # the outer factor's levels go to every task where the codes need them (a formula's factors; the column form
    # codes by the keys it holds): a copy per task waiting on a worker
    outer_levels = pd.Index(levels[outer_name]) if isinstance(rows_of, FormulaRows) else None
    coded_rows = ddf.map_partitions(code_outer_groups, rows_of, outer_name, outer_levels, offsets, meta=cmeta)
    n_outer = len(levels[outer_name])
    nparts = npartitions or max(1, min(max(ddf.npartitions, n // BLOCK_ROWS + 1), n_outer))
    shuffled = client.persist(coded_rows.shuffle(OUTER, npartitions=nparts))
    wait_for(client, client.futures_of(shuffled), step, "partitions arranged", gather=False)
    lengths = client.compute(shuffled.map_partitions(len), sync=True)
    parts = [p for p, k in zip(client.futures_of(shuffled), lengths) if k > 0]
    del shuffled, coded_rows
    client.run(release_unused_memory)
    spec = {"rows_of": rows_of, "family": fam.name, "link": lk.name, "dispersion": dispersion, "order": order,
            "levels": levels, "outer": outer, "keep": keep, "T": T, "lean": n > LEAN_ROWS, "coupled": coupled}
    n_blocks = len(parts)
    step = pulse.step(f"Loading {n_blocks} blocks of whole groups on the workers", 0.03, 0.05)
    # one copy of the spec (the global levels, of the size of the groups) on each worker, which every actor's
    # task refers to: a copy in each task would stay as long as its actor
    spec_on_workers = client.scatter([spec], broadcast=True)[0]
    actors: list = []
    laps: list[ActorBlock] = []
    try:
        while parts:  # one partition at a time, released as soon as its block holds the rows
            part = parts.pop(0)
            actors.append(client.submit(GeneralBlockActor, part, spec_on_workers, actor=True).result())
            del part
            step.done(len(actors), n_blocks, "blocks loaded")
        del spec_on_workers
        client.run(release_unused_memory)
        fields = _fit_on_actors(client, actors, laps, rows_of, mf0, fam, lk, model, se, dispersion, pulse, shapes,
                                order, levels, coupled, full, y, binomial, T, names, x_names, n, n_input, warnings)
    except BaseException as exc:
        # a cancel (or an error) leaves the fit with its traceback, whose frames hold handles of the actors (the
        # driver's objectives, the calls in flight) as long as the error is kept, e.g. by whoever reports it: the
        # finished frames' locals go now, so that the blocks leave the workers below
        traceback.clear_frames(exc.__traceback__)
        raise
    finally:  # the actors end when the last handle goes; a cancelled load drops the partitions not yet loaded
        parts.clear()
        laps.clear()
        actors.clear()
        # distributed keeps each actor call's closure in a reference cycle with the actor's handle: without a
        # collection now the blocks (the data's size on the workers) would stay until Python's next one
        gc.collect()
        with suppress(OSError, RuntimeError):  # a lost worker has nothing to give back
            client.run(reuse_freed_memory, False)
    # the record, once: the passes' warnings first, the rows the actors gave their per-row results for
    out = record(dict(fields, rows=fields.pop("_input_rows")), [w for w in warnings if w not in fields["warnings"]],
                 dropped)
    return out, levels


def _fit_on_actors(client: Any, actors: list, laps: list, rows_of: FormulaRows | ColumnRows, mf0: ModelFrame,
                   fam: Family, lk: Link, model: dict, se: str, dispersion: str, pulse: Pulse, shapes: list,
                   order: list[str], levels: dict[str, list[str]], coupled: bool, full: list[dict], y: dict,
                   binomial: bool, T: np.ndarray, names: list[str], x_names: list[str], n: int, n_input: int,
                   warnings: list[str]) -> dict:
    """The fit over the loaded actors (step 3 of the module docstring): the in-memory driver's fields, with the
    rows the actors gave their per-row results for under ``_input_rows``. ``laps``: filled here with the actors'
    driver-side blocks, cleared by the caller."""
    futures = [a.info() for a in actors]
    infos = [f.result() for f in futures]
    specs = [BlockSpec(slice(0, 0), i["level_maps"]) for i in infos]
    level_maps = [i["level_maps"] for i in infos]
    # crossed factors: the actors' parts of the coupled block asked for a few at a time (one per worker, at least
    # two), so the driver holds those and their sum
    in_flight = max(2, len(client.nthreads()))
    st = skeleton(shapes, [len(levels[c]) for c in order], [levels[c] for c in order])
    laps.extend(ActorBlock(a, skeleton(shapes, i["sizes"]), fam) for a, i in zip(actors, infos))
    normals = [i["normal"] for i in infos if "normal" in i]
    del infos
    p = T.shape[1]
    remote = ActorRows(actors, y, p, dispersion, [s["columns"] for s in full] if binomial else None,
                       coupled)
    remote.pulse = pulse
    mf = DriverFrame(response=mf0.response, y=np.zeros(0), X=np.zeros((0, 0)), x_names=x_names, terms=[],
                rows=np.zeros(0, dtype=np.int64), n_input=n_input, intercept=mf0.intercept,
                formula=mf0.formula, warnings=list(warnings), count=n)
    client.run(reuse_freed_memory, True)  # from here on each evaluation's arrays are those of the one before
    try:
        with np.errstate(all="ignore"), one_blas_thread():
            if normals:  # REML: every block centres the response on the whole data's least-squares fit
                beta0 = centring_fit(sum(normals))
                for f in [a.centre(beta0) for a in actors]:
                    f.result()
                lmm = CoupledLmm(laps, n, y["sum_log_w"], beta0, st, in_flight) if coupled else \
                    ActorProfiledLmm(laps, n, y["sum_log_w"], beta0)
                lmm.pulse = pulse
                fields = _reml_run(lmm, specs, st, T, names, mf, None, None, model, pulse, remote=remote,
                                   polish=not coupled)
            else:
                pulse("Initial values (GLM)", 0.05)
                nb0: float | None
                glm_m2: float | None
                glm_dev: float | None
                if fam.name == "negbin":
                    beta0, nb0, glm_m2 = negbin_profile(remote.glm, lambda f, dev: remote.likelihood(f).minus2(dev),
                                                        y["mean"], y["var"])
                    fam = negbin_family(nb0)
                    glm_dev = None
                else:
                    beta0, glm_dev = remote.glm(fam)
                    nb0 = glm_m2 = None
                beta0 = remote.inside_start(beta0, fam, lk)
                obj: ActorLaplace | CoupledLaplace
                if coupled:  # one block: the whole data over the actors, each step's factor reduced here
                    unit = CoupledUnit(actors, st, fam, level_maps, in_flight)
                    unit.pulse = pulse
                    obj = CoupledLaplace(unit, remote.likelihood(fam), st.n_theta)
                    specs = [BlockSpec(slice(0, 0), [np.arange(len(levels[c])) for c in order])]
                else:
                    obj = ActorLaplace(laps, remote.likelihood(fam), st.n_theta)
                    obj.pulse = pulse
                if fam.name == "negbin":
                    obj.set_family(fam, obj.lik)
                fields = _laplace_run(obj, specs, st, np.zeros((0, p)), T, names, mf, None, None, fam, lk, model,
                                      se, pulse, beta0, nb0, glm_m2, glm_dev, remote=remote)
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        raise GlmmInputError(
            f"the fit broke down numerically ({exc}): the data may not suit the {fam.name} family with the "
            f"{lk.name} link, or the random-effects terms may ask more than the data can tell. Check the "
            "response and predictors, simplify the random effects, or try another link") from None
    return dict(fields, _input_rows=remote.input_rows)


def read_parquet_lazily(path: str, columns: list[str] | None = None) -> Any:
    """A Parquet file or directory as a Dask DataFrame (only the columns a fit selects are ever loaded; ``columns``:
    only these), for ``glmmlab fit DATA.parquet --engine dask``."""
    import dask.dataframe as dd

    try:
        return dd.read_parquet(path, columns=columns)
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        what = f" with columns {columns}" if columns is not None else ""
        raise GlmmInputError(f"cannot read Parquet data '{path}'{what}: {first}") from None
