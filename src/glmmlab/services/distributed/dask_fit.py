"""Mixed models on a Dask DataFrame: any random-effects part whose grouping factors nest (one factor, ``(1 | g)``,
``(1 + x | g)``, ``(x || g)``, or ``(1 | a/b)``), fitted as in memory (:mod:`glmmlab.engine.solvers`).

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
columns, ``I()``, ``log()``, ``exp()``, ``sqrt()``, products and interactions of numeric columns, offsets,
weights, ``cbind()``), or the random-intercept form ``response ~ fixed + (1 | group)`` over numeric columns
(:func:`fit_columns_on_dask`, as ``fit_glmm`` in memory: rows with a missing, non-numeric or infinite value left
out, a predictor constant on the rows used dropped by name). Fixed factors and ``scale()`` need the whole data's
levels or moments; they are refused with a message saying to fit in memory. Crossed factors couple every row and
are refused too.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, Literal, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import linalg

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family, negbin_family
from glmmlab.engine.families.links import Link
from glmmlab.engine.families.response import Response
from glmmlab.engine.inference.advice import design_columns, separation_of_parts
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.design import (
    check_not_constant,
    constant_column_warning,
    no_complete_rows,
    rank_deficient_warning,
    too_few_groups,
)
from glmmlab.engine.model.formula import BinOp, Call, Expr, Formula, Paren, Unary, parse_formula
from glmmlab.engine.model.options import OPTIONS, check_options, nondefault_options
from glmmlab.engine.model.terms import FactorBlock, ModelFrame, RandomTerm, merge_terms
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.assemble import record
from glmmlab.engine.solvers.blocked_cholesky import Structure, check_coupled_size
from glmmlab.engine.solvers.fit import _check_nagq, check_response_mean
from glmmlab.engine.solvers.glm_start import glm_pass, irls, moment_sums, moment_theta_of, negbin_profile
from glmmlab.engine.solvers.laplace import GeneralLaplace, edge_gap, inside_start_of
from glmmlab.engine.solvers.laplace_fit import _laplace_run, laplace_rows
from glmmlab.engine.solvers.likelihood import Likelihood, likelihood_sums
from glmmlab.engine.solvers.reml import ProfiledLmm, _reml_run, reml_rows
from glmmlab.engine.solvers.row_blocks import (
    BlockedLaplace,
    BlockedProfiledLmm,
    BlockSpec,
    centring_fit,
    normal_equations,
    outer_factor,
    stable_order,
)
from glmmlab.engine.solvers.scaling import GLM_PIECE, design_dot, design_scaling
from glmmlab.engine.solvers.threads import one_blas_thread
from glmmlab.services.distributed.cluster import on_client, release_unused_memory, reuse_freed_memory
from glmmlab.services.modeling import frames
from glmmlab.services.modeling.fitted import FittedModel

# The workers import this module to build the actors: what only the driver or the formula's model frames need is
# imported where it is used (the workers of a column-form fit then hold some 25 MB less of modules).

ROW = "__glmmlab_row__"
OUTER = "__glmmlab_outer__"
IN_MEMORY = "fit in memory (a pandas, polars or Arrow table)"
BLOCK_ROWS = 1_000_000  # rows per block: keeps each evaluation's temporary arrays small on the workers
LEAN_ROWS = 5_000_000  # above this many rows the actors hold the design in float32 and keep no per-row state
ROWS_IN_FLIGHT = 4  # blocks whose per-row results the driver asks for at a time


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


def _check_supported(formula: Formula, meta: pd.DataFrame, family: str, weights, offset) -> ModelFrame:
    """Refuse what needs the whole data before any pass; return the model frame of the (empty) meta frame."""
    from glmmlab.services.modeling.modelframe import build_model_frame

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


# -- how one partition's rows become a model frame -----------------------------------------------------------
class FormulaRows:
    """A formula's model frame of one partition (:func:`build_model_frame` without the whole data's checks)."""

    def __init__(self, formula: Formula, family: str, weights: Optional[str], offset: Optional[str]):
        self.formula, self.family, self.weights, self.offset = formula, family, weights, offset  # parsed once
        f = formula
        self.columns = list(dict.fromkeys(f.columns() + [c for c in (weights, offset) if c is not None]))
        self.shuffled = self.columns  # what the shuffle carries besides ROW and OUTER
        self.group_columns: list[str] = []
        for r in f.random:
            for g in r.group:
                self.group_columns += [n for n in g.names() if n not in self.group_columns]

    def frame(self, part: pd.DataFrame) -> ModelFrame:
        from glmmlab.services.modeling.modelframe import build_model_frame

        return build_model_frame(part, self.formula, family=self.family, weights=self.weights, offset=self.offset,
                                 whole=False)

    def summary(self, part: pd.DataFrame) -> tuple[ModelFrame, dict]:
        """Pass 1's model frame and what the driver needs besides it: the distinct grouping values on the rows
        used."""
        mf = self.frame(part)
        return mf, {"distinct": part.iloc[mf.rows][self.group_columns].drop_duplicates()}

    def outer_codes(self, part: pd.DataFrame, outer: str, levels: pd.Index | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows used and their outer group's global code (``levels``: the outer factor's global levels)."""
        assert levels is not None
        mf = self.frame(part)
        term = next((t for t in mf.terms if t.component == outer), None)
        codes = np.zeros(mf.n, dtype=np.int64)
        if term is not None and mf.n:
            codes = levels.get_indexer(term.levels)[np.asarray(term.codes)]
        return np.asarray(mf.rows), codes

    def block_frame(self, part: pd.DataFrame, spec: dict) -> ModelFrame:
        """The model frame of a partition of shuffled rows (its columns, ROW and OUTER)."""
        return self.frame(part.drop(columns=[ROW, OUTER]))

    def levels(self, summaries: list[dict]) -> tuple[dict[str, tuple[np.ndarray, list[str]]], int]:
        """Per grouping factor, its codes on the distinct grouping values and its global levels (the order of
        :func:`build_model_frame`), and the number of distinct values."""
        from glmmlab.services.modeling.modelframe import grouping_levels

        distinct = pd.concat([s["distinct"] for s in summaries], ignore_index=True).drop_duplicates(
            ignore_index=True)
        coded = grouping_levels(distinct, self.formula)
        for r in self.formula.random:
            nl = len(coded[r.component][1])
            if nl < 2:
                raise GlmmInputError(
                    f"the grouping factor {r.component!r} of {r.written} has only {nl} level on the rows used; "
                    "grouping factors need two or more levels")
        return coded, len(distinct)

    def no_rows(self, meta: pd.DataFrame) -> None:
        from glmmlab.services.modeling.modelframe import build_model_frame

        build_model_frame(meta, self.formula, family=self.family, weights=self.weights, offset=self.offset)


class ColumnRows:
    """The model frame of ``response ~ fixed + (1 | group)`` over numeric columns on one partition, as
    :func:`glmmlab.services.modeling.frames.column_frame` builds it in memory (rows with a missing, non-numeric or
    infinite value left out) but keeping every fixed column: which are constant is told on the whole data."""

    def __init__(self, response: str, group: str, fixed: list[str], intercept: bool):
        self.response, self.group, self.fixed, self.intercept = response, group, list(fixed), intercept
        self.columns = [response, group] + list(fixed)
        self.shuffled = [response] + list(fixed)  # OUTER is the group's code
        self.names = (["(Intercept)"] if intercept else []) + list(fixed)
        self.keys: pd.Index | None = None  # the whole data's group keys, once known (codes into them)

    def _complete(self, part: pd.DataFrame) -> tuple[list[tuple], pd.Series, np.ndarray, np.ndarray]:
        """The response's and the fixed columns' :func:`frames.numeric_values`, the group keys, their codes into
        the whole data's keys (in pass 1, before those are known: 0 where there is a group), and the complete
        rows."""
        values = [frames.numeric_values(part[c]) for c in [self.response] + self.fixed]
        keys = frames.group_keys(part[self.group])
        # the whole data's keys (a partition's own labels could be written otherwise: 1 against 1.0)
        codes = keys.notna().to_numpy().astype(np.int64) - 1 if self.keys is None else self.keys.get_indexer(keys)
        keep = codes >= 0
        for v in values:
            keep &= np.isfinite(v[0])
        return values, keys, codes, np.flatnonzero(keep)

    def _frame(self, part: pd.DataFrame, values: list[tuple], codes: np.ndarray, rows: np.ndarray,
               levels: list[str] | None, order: Literal["C", "F"] = "C") -> ModelFrame:
        """The frame of the complete ``rows`` with the group's ``levels`` (None: without the random term); its X in
        ``order`` ("F": column by column, contiguous writes, for what reads it by columns)."""
        whole = rows.size == len(part)  # every row complete: no gathers
        off = 1 if self.intercept else 0
        X = np.empty((rows.size, off + len(self.fixed)), order=order)
        if off:
            X[:, 0] = 1.0
        for j, v in enumerate(values[1:]):
            if whole:
                X[:, off + j] = v[0]
            else:
                np.take(v[0], rows, out=X[:, off + j])
        terms = [RandomTerm(self.group, codes if whole else codes[rows], levels, np.broadcast_to(1.0, (rows.size, 1)),
                            ["(Intercept)"])] if levels is not None else []
        return ModelFrame(response=self.response, y=values[0][0] if whole else values[0][0][rows], X=X,
                          x_names=list(self.names), terms=terms, rows=rows, n_input=len(part),
                          intercept=self.intercept)

    def summary(self, part: pd.DataFrame) -> tuple[ModelFrame, dict]:
        """Pass 1's model frame (without its random term) and what the driver needs besides it: the columns'
        numeric checks (values present, numbers among them, an example of a value that is not), the distinct
        group keys on the rows used, and each design column's range on them."""
        values, keys, codes, rows = self._complete(part)
        mf = self._frame(part, values, codes, rows, None, "F")  # read by columns: ranges, Gram, separation
        out: dict[str, Any] = {"numeric": [v[1:] for v in values],
                               "group_numeric": frames.is_numeric_group(part[self.group]),
                               "groups": pd.unique(keys.to_numpy()[rows]),
                               "x_range": [(float(c.min()), float(c.max())) for c in mf.X.T] if mf.n else None}
        return mf, out

    def outer_codes(self, part: pd.DataFrame, outer: str, levels: pd.Index | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows used and their group's global code (into the whole data's keys: no ``levels`` needed)."""
        _, _, codes, rows = self._complete(part)
        return rows, codes[rows]

    def block_frame(self, part: pd.DataFrame, spec: dict) -> ModelFrame:
        """The model frame of a partition of shuffled rows (complete rows of the response, the fixed columns, ROW
        and OUTER, the group's code into the whole data's levels ``spec["levels"]``)."""
        values = [frames.numeric_values(part[c]) for c in [self.response] + self.fixed]
        codes = part[OUTER].to_numpy()
        return self._frame(part, values, codes, np.arange(len(part)), spec["levels"][self.group])

    def refuse(self, summaries: list[dict]) -> None:
        """The in-memory refusal of a column none of whose present values is a number."""
        for j, name in enumerate([self.response] + self.fixed):
            checks = [s["numeric"][j] for s in summaries]
            if sum(c[0] for c in checks) and not sum(c[1] for c in checks):
                raise frames.not_numeric_error(name, "response" if j == 0 else "fixed-effect",
                                               next(c[2] for c in checks if c[2] is not None))

    def levels(self, summaries: list[dict]) -> tuple[dict[str, tuple[np.ndarray, list[str]]], int]:
        """The group's levels, in the in-memory order, from the distinct keys on the rows used (kept here: the
        later passes code the groups by them)."""
        numeric = any(s["group_numeric"] for s in summaries)
        uniques = pd.unique(np.concatenate([np.asarray(s["groups"], dtype=object) for s in summaries]))
        keys, labels = frames.sorted_levels(uniques.astype(float) if numeric else uniques, numeric)
        if len(labels) < 2:
            raise too_few_groups(self.group, len(labels))
        self.keys = pd.Index(keys)
        return {self.group: (np.arange(len(labels)), labels)}, len(labels)

    def constant(self, summaries: list[dict]) -> list[int]:
        """The fixed columns constant on the rows used (dropped, as in memory)."""
        off = 1 if self.intercept else 0
        out = []
        for j in range(off, len(self.names)):
            lo = min(s["x_range"][j][0] for s in summaries)
            hi = max(s["x_range"][j][1] for s in summaries)
            if lo == hi and (self.intercept or lo == 0.0):
                out.append(j)
        return out

    def no_rows(self, meta: pd.DataFrame) -> None:
        raise no_complete_rows(self.response, self.group)


# -- pass 1 ------------------------------------------------------------------------------------------------
def _summary(part: pd.DataFrame, rows_of: FormulaRows | ColumnRows, binomial: bool) -> dict:
    try:
        mf, checks = rows_of.summary(part)
    except GlmmInputError as exc:  # the driver says which partition (row numbers and counts are within it)
        return {"error": str(exc)}
    out = {"n_input": len(part), "n": mf.n, "warnings": list(mf.warnings), "x_names": list(mf.x_names), "gram": None,
           "w_min": None, **checks}
    if mf.n:
        X = np.asarray(mf.X, dtype=float)
        out["gram"] = X.T @ X
        if mf.weights is not None:
            out["w_min"] = float(np.min(mf.weights))
        y = np.asarray(mf.y, dtype=float)
        mean = float(np.mean(y))
        out["y"] = {"n": mf.n, "mean": mean, "m2": float(np.sum((y - mean) ** 2)), "min": float(np.min(y)),
                    "max": float(np.max(y)), "sum_w": float(mf.n), "sum_wy": mean * mf.n, "sum_log_w": 0.0}
        if mf.weights is not None:
            w = np.asarray(mf.weights, dtype=float)
            out["y"].update(sum_w=float(np.sum(w)), sum_wy=float(np.sum(w * y)),
                            sum_log_w=float(np.sum(np.log(w[w > 0]))))
        if binomial:  # what the separation check needs of each column
            out["columns"] = design_columns(list(mf.x_names), X, y)
    return out


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


def _coded(part: pd.DataFrame, rows_of: FormulaRows | ColumnRows, outer: str, outer_levels: pd.Index | None,
           offsets: np.ndarray, partition_info: dict | None = None) -> pd.DataFrame:
    """The rows used, with their input row numbers and their outer group's global code."""
    number = partition_info["number"] if partition_info else 0
    rows, codes = rows_of.outer_codes(part, outer, outer_levels)
    out = part[rows_of.shuffled]  # a new frame: the columns added below do not reach the partition
    if rows.size < len(part):
        out = out.iloc[rows].copy()
    out[ROW] = offsets[number] + np.asarray(rows, dtype=np.int64)
    out[OUTER] = np.asarray(codes, dtype=np.int64)
    return out


# -- the block actors ----------------------------------------------------------------------------------------
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
        for comp in spec["order"]:
            b, levels = local[comp], spec["levels"][comp]
            glob = np.arange(len(levels)) if b.levels == levels else pd.Index(levels).get_indexer(b.levels)
            gc = glob[np.asarray(b.codes)]
            present = np.bincount(gc, minlength=len(levels)) > 0  # the levels in this block (no sort)
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
            if self.reml:
                out = reml_rows(self.prof.final(*self.final_at), self.y, self.pw, self.off)
                out["pearson_residuals"] = out["deviance_residuals"]  # equal: held and sent once
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


@dataclass
class _Frame(ModelFrame):
    """The driver's model frame: the rows are on the actors; here are their number and the design's names."""

    count: int = 0

    @property
    def n(self) -> int:
        return self.count


class ActorRows:
    """The rows on the actors, as :class:`glmmlab.engine.solvers.row_blocks.RemoteRows`: sums over them, and their
    per-row results gathered once, in input order."""

    def __init__(self, actors: list, y: dict, p: int, dispersion: str, columns: list | None):
        self.actors, self.y, self.p, self.dispersion, self.columns = actors, y, p, dispersion, columns
        self.input_rows: np.ndarray | None = None

    def _map(self, method: str, *args: Any) -> list:
        futures = [getattr(a, method)(*args) for a in self.actors]
        return [f.result() for f in futures]

    def has_edge(self, fam: Family, lk: Link) -> bool:
        return fam.has_edge(lk, np.array([self.y["mean"]]))  # the only thing of y it reads: its mean

    def eta_range(self, fam: Family, lk: Link) -> tuple[float, float]:
        return fam.eta_range(lk, np.array([self.y["mean"]]))

    def likelihood(self, fam: Family) -> Likelihood:
        parameter = None if fam.parameter is None else float(fam.parameter)
        return Likelihood.of_blocks(fam, self._map("likelihood_sums", parameter, self.dispersion), self.dispersion)

    def moment_theta(self, beta: np.ndarray, fam: Family, relative: bool) -> float:
        parameter = None if fam.parameter is None else float(fam.parameter)
        return moment_theta_of(self._map("moment_sums", beta, parameter), self.p, fam, relative)

    def glm(self, fam: Family) -> tuple[np.ndarray, float]:
        """The GLM by IRLS on the actors' summed normal equations."""
        parameter = None if fam.parameter is None else float(fam.parameter)

        def solve(A: np.ndarray, c: np.ndarray, parts: list) -> np.ndarray:
            try:
                return linalg.cho_solve(linalg.cho_factor(A), c)
            except (np.linalg.LinAlgError, ValueError):
                return np.linalg.lstsq(A, c, rcond=None)[0]

        try:
            return irls(lambda beta: self._map("glm_pass", beta, parameter), solve)
        finally:
            self._map("glm_done")

    def inside_start(self, beta: np.ndarray, fam: Family, lk: Link) -> np.ndarray:
        """:func:`glmmlab.engine.solvers.laplace.inside_start` from the actors' sums."""
        if not self.has_edge(fam, lk):
            return beta

        def centre_of(c: float) -> np.ndarray:
            parts = self._map("centre_sums")
            G, s1, so = (sum(p[k] for p in parts) for k in range(3))
            return np.linalg.lstsq(G, c * s1 - so, rcond=None)[0]

        return inside_start_of(beta, lk, self.eta_range(fam, lk), self.y["sum_wy"] / self.y["sum_w"], centre_of,
                               lambda b, lo, hi: min(self._map("edge_gap", b, lo, hi)))

    def rows(self, finals: list[dict]) -> dict:
        numbers = self._map("row_numbers")
        rows = np.concatenate(numbers)
        order = np.argsort(rows, kind="stable")
        n = rows.size
        self.input_rows = rows[order]
        del rows
        dest = np.empty(n, dtype=np.int32 if n < np.iinfo(np.int32).max else np.int64)
        dest[order] = np.arange(n, dtype=dest.dtype)  # where each block's row goes in input order
        del order
        out: dict[str, np.ndarray] = {}
        starts = np.concatenate([[0], np.cumsum([x.size for x in numbers])])
        del numbers
        # a few blocks asked for at a time: each worker computes one block's rows while the driver places
        # another's, and the driver holds the output and those few blocks
        pending: deque = deque()

        def place(j: int, future: Any) -> None:
            at = dest[starts[j]:starts[j + 1]]
            last = ""
            for key, col in future.result().items():
                if col is None:  # the same column as the one before it
                    out.setdefault(key, out[last])
                else:
                    out.setdefault(key, np.empty(n, dtype=col.dtype))[at] = col
                last = key

        for k, actor in enumerate(self.actors):
            pending.append((k, actor.take_rows()))
            if len(pending) >= ROWS_IN_FLIGHT:
                place(*pending.popleft())
        while pending:
            place(*pending.popleft())
        return out

    def separation(self, names: list[str], beta: np.ndarray, extreme: int) -> list[str]:
        return separation_of_parts(names, self.columns or [], beta, extreme, int(self.y["n"]))


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
    """Fit an lme4 formula whose grouping factors nest to a Dask DataFrame (see the module docstring).
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
        mf0 = _check_supported(formula, data._meta, fam.name, weights, offset)
        if not mf0.terms:  # pragma: no cover - the parser and the model frame require a random term
            raise GlmmInputError(f"the formula {formula.text!r} has no random-effects term")
        (fixed, group), rows_of = plain_columns(formula, data._meta), FormulaRows(formula, fam.name, weights, offset)
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

        recipe = replace(mf0.recipe, terms=tuple(replace(t, levels=tuple(levels[t.component]))
                                                 for t in mf0.recipe.terms))
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

    report(progress, "Pass 1 of 2 over the data: checking columns and collecting groups", 0.0)
    summaries = client.compute([dask.delayed(_summary)(p, rows_of, binomial) for p in ddf.to_delayed()], sync=True)
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
    outer = outer_factor(probe)
    if outer is None:
        raise GlmmInputError(_crossed_message(probe))

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

    report(progress, "Pass 2 of 2: arranging rows so that each outer group lives in one partition", 0.02)
    outer_name = order[outer]
    cmeta = meta[rows_of.shuffled].iloc[:0].copy()
    cmeta[ROW] = pd.Series(dtype=np.int64)
    cmeta[OUTER] = pd.Series(dtype=np.int64)
    # the outer factor's levels go to every task where the codes need them (a formula's factors; the column form
    # codes by the keys it holds): a copy per task waiting on a worker
    outer_levels = pd.Index(levels[outer_name]) if isinstance(rows_of, FormulaRows) else None
    coded_rows = ddf.map_partitions(_coded, rows_of, outer_name, outer_levels, offsets, meta=cmeta)
    n_outer = len(levels[outer_name])
    nparts = npartitions or max(1, min(max(ddf.npartitions, n // BLOCK_ROWS + 1), n_outer))
    shuffled = client.persist(coded_rows.shuffle(OUTER, npartitions=nparts))
    lengths = client.compute(shuffled.map_partitions(len), sync=True)
    parts = [p for p, k in zip(client.futures_of(shuffled), lengths) if k > 0]
    del shuffled, coded_rows
    client.run(release_unused_memory)
    spec = {"rows_of": rows_of, "family": fam.name, "link": lk.name, "dispersion": dispersion, "order": order,
            "levels": levels, "outer": outer, "keep": keep, "T": T, "lean": n > LEAN_ROWS}
    report(progress, f"Loading {len(parts)} blocks of whole groups on the workers", 0.04)
    # one copy of the spec (the global levels, of the size of the groups) on each worker, which every actor's
    # task refers to: a copy in each task would stay as long as its actor
    spec_on_workers = client.scatter([spec], broadcast=True)[0]
    actors = []
    while parts:  # one partition at a time, released as soon as its block holds the rows
        part = parts.pop(0)
        actors.append(client.submit(GeneralBlockActor, part, spec_on_workers, actor=True).result())
        del part
    del spec_on_workers
    client.run(release_unused_memory)

    futures = [a.info() for a in actors]
    infos = [f.result() for f in futures]
    specs = [BlockSpec(slice(0, 0), i["level_maps"]) for i in infos]
    st = _skeleton(shapes, [len(levels[c]) for c in order], [levels[c] for c in order])
    laps = [_Block(a, _skeleton(shapes, i["sizes"]), fam) for a, i in zip(actors, infos)]
    normals = [i["normal"] for i in infos if "normal" in i]
    del infos
    p = T.shape[1]
    remote = ActorRows(actors, y, p, dispersion, [s["columns"] for s in full] if binomial else None)
    mf = _Frame(response=mf0.response, y=np.zeros(0), X=np.zeros((0, 0)), x_names=x_names, terms=[],
                rows=np.zeros(0, dtype=np.int64), n_input=n_input, intercept=mf0.intercept,
                formula=mf0.formula, warnings=list(warnings), count=n)
    client.run(reuse_freed_memory, True)  # from here on each evaluation's arrays are those of the one before
    try:
        with np.errstate(all="ignore"), one_blas_thread():
            if normals:  # REML: every block centres the response on the whole data's least-squares fit
                beta0 = centring_fit(sum(normals))
                for f in [a.centre(beta0) for a in actors]:
                    f.result()
                fields = _reml_run(ActorProfiledLmm(laps, n, y["sum_log_w"], beta0), specs, st, T, names, mf, None,
                                   None, model, progress, remote=remote)
            else:
                report(progress, "Initial values (GLM)", 0.05)
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
                obj = ActorLaplace(laps, remote.likelihood(fam), st.n_theta)
                if fam.name == "negbin":
                    obj.set_family(fam, obj.lik)
                fields = _laplace_run(obj, specs, st, np.zeros((0, p)), T, names, mf, None, None, fam, lk, model,
                                      se, progress, beta0, nb0, glm_m2, glm_dev, remote=remote)
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        raise GlmmInputError(
            f"the fit broke down numerically ({exc}): the data may not suit the {fam.name} family with the "
            f"{lk.name} link, or the random-effects terms may ask more than the data can tell. Check the "
            "response and predictors, simplify the random effects, or try another link") from None
    finally:  # the actors end when the last handle goes
        laps.clear()
        actors.clear()
        remote.actors = []
        # distributed keeps each actor call's closure in a reference cycle with the actor's handle: without a
        # collection now the blocks (the data's size on the workers) would stay until Python's next one
        gc.collect()
        with suppress(OSError, RuntimeError):  # a lost worker has nothing to give back
            client.run(reuse_freed_memory, False)
    # the record, once: the passes' warnings first, the rows the actors gave their per-row results for
    out = record(dict(fields, rows=remote.input_rows), [w for w in warnings if w not in fields["warnings"]], dropped)
    return out, levels


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
