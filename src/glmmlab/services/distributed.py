"""Fits past one machine's memory: the same GLMM on a Dask DataFrame, on a Dask cluster.

With one scalar random intercept every quantity of a fit is a sum over groups, so the fit runs as passes over
blocks of whole groups (:mod:`glmmlab.engine.blocks`). Here the blocks live on Dask workers as actors:

1. one pass over the partitions checks the columns (numeric, response range), counts complete rows, collects the
   group labels and the predictors' means and spreads (for the internal scaling);
2. the complete rows are shuffled once so that every group lives in one partition, and each partition becomes a
   block actor holding its scaled design;
3. the estimation (:func:`glmmlab.engine.fit.fit_blocks`, the same code as in memory) then sends only
   (theta, beta) to the actors and receives small sums back, once per evaluation.

Listwise deletion, validation and scaling follow the in-memory rules, so results agree with the in-memory
engine to rounding.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine import design
from glmmlab.engine.blocks import Block, one_blas_thread
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.fit import DesignMeta, fit_blocks, model_spec, validate_options
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.results import GlmmResult
from glmmlab.services import frames

BLOCK_ROWS = 1_000_000
LEAN_ROWS = 5_000_000  # above this many rows the block actors keep no per-row state between evaluations
ROW = "__glmmlab_row__"
GROUP = "__glmmlab_group__"


# -- pass 1: per-partition summaries --------------------------------------------------------------------------
def _partition_summary(part: pd.DataFrame, response: str, group: str, fixed: list[str]) -> dict:
    y, y_present, y_numeric, y_example = frames.numeric_values(part[response])
    keep = np.isfinite(y)
    cols = []
    for name in fixed:
        x, present, numeric, example = frames.numeric_values(part[name])
        cols.append((x, present, numeric, example))
        keep &= np.isfinite(x)
    keys = frames.group_keys(part[group])
    keep &= keys.notna().to_numpy()
    out: dict[str, Any] = {
        "n_input": len(part), "n": int(keep.sum()),
        "y_check": (y_present, y_numeric, y_example),
        "x_check": [(p, n, e) for _, p, n, e in cols],
        "group_numeric": frames.is_numeric_group(part[group]),
        "groups": pd.unique(keys[keep]),
    }
    if out["n"]:
        yk = y[keep]
        out["y_min"], out["y_max"] = float(yk.min()), float(yk.max())
        stats = []
        for x, *_ in cols:
            v = x[keep]
            m = float(v.mean())
            stats.append((float(v.min()), float(v.max()), m, float(np.sum((v - m) ** 2))))
        out["x_stats"] = stats
    return out


def _combine_moments(parts: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Pooled (mean, sum of squared deviations) from per-partition (n, mean, M2) (Chan et al.)."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return mean, m2


# -- the block actors ----------------------------------------------------------------------------------------
class BlockActor(Block):
    """A block built on a worker from one partition of group-shuffled rows."""

    def __init__(self, part: pd.DataFrame, spec: dict):
        order = np.lexsort((part[ROW].to_numpy(), part[GROUP].to_numpy()))
        part = part.iloc[order]
        y = frames.numeric_values(part[spec["response"]])[0]
        off = 1 if spec["intercept"] else 0
        # Lean blocks (very large data) hold the scaled design in float32, half the memory; the products
        # with it are still computed in float64.
        Z = np.empty((len(part), off + len(spec["fixed"])), dtype=np.float32 if spec["lean"] else float)
        if off:
            Z[:, 0] = 1.0
        for j, name in enumerate(spec["fixed"]):
            x = frames.numeric_values(part[name])[0]
            np.subtract(x, spec["center"][j], out=Z[:, off + j])
            Z[:, off + j] /= spec["scale"][j]
        ids, local = np.unique(part[GROUP].to_numpy(), return_inverse=True)
        rows = part[ROW].to_numpy()
        index = np.int32 if rows.size == 0 or rows.max() < np.iinfo(np.int32).max else np.int64
        del part
        super().__init__(y, Z, local.astype(np.int32), spec["family"], spec["link"],
                         rows=rows.astype(index), group_ids=ids.astype(np.int64), keep_last=not spec["lean"])
        release_unused_memory()

    def gram(self) -> np.ndarray:
        X = np.asarray(self.X, dtype=float)
        return X.T @ X

    def keep_columns(self, columns: list[int]) -> None:
        self.X = np.ascontiguousarray(self.X[:, columns])

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self, method)(*args)


def release_unused_memory() -> None:
    """Give memory that this worker process has freed back to the operating system: Arrow's buffer pool and
    glibc's heap both keep it otherwise. The shuffle and the building of the blocks free far more than the
    blocks keep (measured: 750 MB resident after loading 5M rows on a worker whose blocks hold 210 MB;
    410 MB after this), and a worker is judged, and stopped at its memory limit, by what it holds."""
    import ctypes
    import gc

    gc.collect()
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class ActorBlocks:
    """The blocks of a fit as Dask actors: ``map`` sends the same call to all and gathers the answers."""

    def __init__(self, actors: list):
        self.actors = actors

    def map(self, method: str, *args: Any) -> list[Any]:
        futures = [a.call(method, *args) for a in self.actors]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.actors = []


def _add_codes(part: pd.DataFrame, response: str, group: str, fixed: list[str], keys: np.ndarray,
               offsets: np.ndarray, partition_info: dict | None = None) -> pd.DataFrame:
    """Row numbers in the input, global group codes, and only the complete rows."""
    number = partition_info["number"] if partition_info else 0
    rows = offsets[number] + np.arange(len(part), dtype=np.int64)
    y = frames.numeric_values(part[response])[0]
    keep = np.isfinite(y)
    for name in fixed:
        keep &= np.isfinite(frames.numeric_values(part[name])[0])
    gkeys = frames.group_keys(part[group])
    keep &= gkeys.notna().to_numpy()
    codes = pd.Index(keys).get_indexer(gkeys)
    out = part[[response] + fixed].copy()
    out[ROW] = rows
    out[GROUP] = codes.astype(np.int64)
    return out[keep]


@contextmanager
def dask_client(scheduler: Optional[str] = None, n_workers: int = 2,
                memory_limit: str | None = None) -> Iterator[Any]:
    """A client for ``scheduler``, or a local cluster (closed afterwards) when no address is given."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise GlmmInputError(f"cannot reach the Dask scheduler at '{scheduler}': {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    # The scheduler runs in this process; its shuffle plug-in logs routine start/stop lines as warnings.
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    kwargs = {"memory_limit": memory_limit} if memory_limit else {}
    with worker_config(), LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, **kwargs) as cluster, Client(cluster) as client:
        yield client


def on_client(scheduler: Optional[str], fit: Callable[[Any], GlmmResult]) -> GlmmResult:
    """``fit(client)`` on the current Dask client, or, when there is none, on a client for ``scheduler`` (a local
    cluster when no address is given) that is closed afterwards."""
    from dask.distributed import default_client

    try:
        client = default_client()
    except ValueError:
        with dask_client(scheduler) as c:
            return fit(c)
    return fit(client)


def worker_config():
    """Dask settings for the workers of a cluster that glmmlab starts: no pausing at high memory. The block
    actors hold the design as unmanaged memory that spilling cannot move, so near a memory limit a paused
    worker would never run the next task and the fit would wait forever; unpaused, managed data (the
    shuffled partitions) still spill to disk and the nanny still stops a worker that exceeds its limit.
    Give the same setting to the workers of your own cluster (distributed.worker.memory.pause: false)."""
    import dask

    return dask.config.set({"distributed.worker.memory.pause": False})


def fit_dask(
    data: Any,
    response: str,
    group: str,
    fixed: Optional[Sequence[str]] = None,
    *,
    family: str = "gaussian",
    link: Optional[str] = None,
    intercept: bool = True,
    conf_level: float = 0.95,
    max_iter: int = 100,
    tol: float = 1e-6,
    nagq: int = 1,
    se: str = "working",
    progress: ProgressFn = None,
    client: Any = None,
    scheduler: Optional[str] = None,
    npartitions: Optional[int] = None,
) -> GlmmResult:
    """Fit on a Dask DataFrame with the client given (or the default client, or a local cluster)."""
    if client is None:
        return on_client(scheduler, lambda c: fit_dask(
            data, response, group, fixed, family=family, link=link, intercept=intercept, conf_level=conf_level,
            max_iter=max_iter, tol=tol, nagq=nagq, se=se, progress=progress, client=c, npartitions=npartitions))
    fam, lk = validate_options(family, link, conf_level, max_iter, tol, nagq, se)
    fixed = list(fixed or [])
    frames.check_columns(data.columns, None, response, group, fixed)
    start = time.perf_counter()
    ddf = data[[response, group] + fixed]

    report(progress, "Pass 1 of 2 over the data: checking columns and collecting groups", 0.0)
    summaries = client.compute([_delayed_summary(part, response, group, fixed) for part in ddf.to_delayed()],
                               sync=True)
    client.run(release_unused_memory)
    meta, spec, keys = _plan(summaries, response, group, fixed, fam, lk, intercept)
    offsets = np.concatenate([[0], np.cumsum([s["n_input"] for s in summaries])[:-1]]).astype(np.int64)

    report(progress, "Pass 2 of 2: arranging rows so that each group lives in one partition", 0.02)
    coded = ddf.map_partitions(_add_codes, response, group, fixed, keys, offsets,
                               meta=_coded_meta(ddf, response, fixed))
    # Blocks of about BLOCK_ROWS rows keep each evaluation's temporary arrays small on the workers.
    nparts = npartitions or max(1, min(max(ddf.npartitions, meta.n // BLOCK_ROWS + 1), meta.n_groups))
    shuffled = client.persist(coded.shuffle(GROUP, npartitions=nparts))
    lengths = client.compute(shuffled.map_partitions(len), sync=True)
    parts = [f for f, n in zip(client.futures_of(shuffled), lengths) if n > 0]
    del shuffled, coded
    client.run(release_unused_memory)
    report(progress, f"Loading {len(parts)} blocks of whole groups on the workers", 0.04)
    actors = []
    while parts:  # one partition at a time, released as soon as its block holds the rows
        part = parts.pop(0)
        actors.append(client.submit(BlockActor, part, spec, actor=True).result())
        del part
    blocks = ActorBlocks(actors)

    # Collinearity, as in memory: the Gram matrix of the scaled design, added over the blocks.
    gram = sum(blocks.map("gram")) / meta.n
    off = 1 if intercept else 0
    collinear = design.collinear_columns(gram, off) if gram.shape[0] > 1 else []
    if collinear:
        keep = [k for k in range(gram.shape[0]) if k not in set(collinear)]
        for k in collinear:
            name = meta.names[k]
            meta.dropped.append(name)
            meta.warnings.append(design.rank_deficient_warning([name]))
        blocks.map("keep_columns", keep)
        kept = [k - off for k in keep if k >= off]
        names = [meta.names[k] for k in keep if k >= off]
        meta.T, meta.names = design.scale_transform(spec["center"][kept], spec["scale"][kept], names, intercept)
    model = model_spec(response, fixed, group, fam, lk, intercept, conf_level, nagq, max_iter, tol)
    try:
        with one_blas_thread():
            result = fit_blocks(blocks, meta, fam, lk, model, se=se, progress=progress)
    finally:
        blocks.close()
    result.fit_seconds = time.perf_counter() - start
    report(progress, "Done", 1.0)
    return result


def _delayed_summary(part, response, group, fixed):
    import dask

    return dask.delayed(_partition_summary)(part, response, group, fixed)


def _coded_meta(ddf, response: str, fixed: list[str]) -> pd.DataFrame:
    cols = {response: pd.Series(dtype=float)}
    cols.update({f: pd.Series(dtype=float) for f in fixed})
    cols[ROW] = pd.Series(dtype=np.int64)
    cols[GROUP] = pd.Series(dtype=np.int64)
    return pd.DataFrame(cols)


def _plan(summaries: list[dict], response: str, group: str, fixed: list[str], fam, lk, intercept: bool
          ) -> tuple[DesignMeta, dict, np.ndarray]:
    """Apply the in-memory rules to the combined summaries: refusals, dropped columns, scaling, groups."""
    n_input = sum(s["n_input"] for s in summaries)
    if n_input == 0:
        raise GlmmInputError("the data have no rows")
    present = sum(s["y_check"][0] for s in summaries)
    if present and not sum(s["y_check"][1] for s in summaries):
        raise frames.not_numeric_error(response, "response",
                                       next(s["y_check"][2] for s in summaries if s["y_check"][2] is not None))
    for j, name in enumerate(fixed):
        checks = [s["x_check"][j] for s in summaries]
        if sum(c[0] for c in checks) and not sum(c[1] for c in checks):
            raise frames.not_numeric_error(name, "fixed-effect", next(c[2] for c in checks if c[2] is not None))
    full = [s for s in summaries if s["n"]]
    n = sum(s["n"] for s in full)
    if n == 0:
        raise design.no_complete_rows(response, group)
    y_ends = np.array([min(s["y_min"] for s in full), max(s["y_max"] for s in full)])
    design.check_response(y_ends, fam, response)
    numeric = any(s["group_numeric"] for s in summaries)
    uniques = pd.unique(np.concatenate([np.asarray(s["groups"], dtype=object) for s in full]))
    if numeric:
        uniques = uniques.astype(float)
    keys, levels = frames.sorted_levels(uniques, numeric)
    if len(levels) < 2:
        raise design.too_few_groups(group, len(levels))
    warnings, dropped, kept = [], [], []
    centers, scales = [], []
    for j, name in enumerate(fixed):
        stats = [(s["n"], s["x_stats"][j][2], s["x_stats"][j][3]) for s in full]
        lo = min(s["x_stats"][j][0] for s in full)
        hi = max(s["x_stats"][j][1] for s in full)
        if lo == hi and (intercept or lo == 0.0):
            dropped.append(name)
            warnings.append(design.constant_column_warning(name))
            continue
        mean, m2 = _combine_moments(stats)
        if intercept:
            ctr, sd = mean, float(np.sqrt(m2 / n))
        else:
            ctr, sd = 0.0, float(np.sqrt(m2 / n + mean * mean))
        kept.append(name)
        centers.append(ctr)
        scales.append(sd if sd > 0 else 1.0)
    center, scale = np.array(centers), np.array(scales)
    p = len(kept) + (1 if intercept else 0)
    if p == 0:
        raise GlmmInputError(
            "the model has no fixed effects: include the intercept or choose at least one usable fixed effect")
    if n <= p:
        raise GlmmInputError(f"only {n} complete rows for {p} fixed-effect parameters: "
                             "use fewer fixed effects or more data")
    T, names = design.scale_transform(center, scale, kept, intercept)
    meta = DesignMeta(names=names, levels=levels, T=T, n=n, n_input=n_input, intercept=intercept,
                      dropped=dropped, warnings=warnings)
    spec = {"response": response, "fixed": kept, "family": fam.name, "link": lk.name, "intercept": intercept,
            "center": center, "scale": scale, "lean": n > LEAN_ROWS}
    return meta, spec, keys


def fit_parquet_on_dask(path: str, *, scheduler: Optional[str] = None, response: str, group: str,
                        fixed: Optional[Sequence[str]] = None, progress: Optional[Callable] = None,
                        **options: Any) -> GlmmResult:
    """``glmmlab fit DATA.parquet --engine dask [--scheduler ADDRESS]``: read the Parquet file or directory
    lazily (only the model's columns) and fit on the cluster, on the engine that
    :func:`glmmlab.services.fitting.choose_engine` gives the model."""
    import dask.dataframe as dd

    columns = [response, group] + list(fixed or [])
    try:
        ddf = dd.read_parquet(path, columns=list(dict.fromkeys(columns)))
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GlmmInputError(f"cannot read Parquet data '{path}' with columns {columns}: {first}") from None
    from glmmlab.services.fitting import fit_columns_dask  # the one choice of engine (fitting imports this module)

    with dask_client(scheduler) as client:
        return fit_columns_dask(ddf, response, group, fixed, client=client, progress=progress, **options)
