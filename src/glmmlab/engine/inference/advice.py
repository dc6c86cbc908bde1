"""The warnings a fit can carry, in plain words with the advice of the GLMM tab."""

from __future__ import annotations

import numpy as np

SINGULAR = (
    "Singular fit: the random-intercept variance is at or near zero, on the boundary of the parameter space. "
    "The group variable may explain very little of the variation in the response, or there may be too few "
    "observations or groups to tell group-level from residual variation apart. Interpret the ICC and the "
    "variance components with caution; a fixed-effects-only model (GLM) may be more appropriate."
)


def not_converged(max_iter: int, tol: float) -> str:
    return (
        f"The model did not converge within {max_iter} iterations at tolerance {tol:g}; the estimates shown are "
        "the last ones reached. Try: increase Max Iterations (e.g. 100 -> 500); relax Convergence Tolerance "
        "(e.g. 1e-6 -> 1e-4); with very few groups (2-3) the variance component is hard to estimate; very "
        "different predictor scales can also make the starting values fail."
    )


def mean_at_edge(family: str, link: str, no_glm: bool) -> str:
    text = (
        f"The likelihood's maximum lies where some fitted means reach 0, the edge of what the {link} link allows "
        f"for the {family} family: the estimates are the best point found next to that edge (the log-likelihood "
        "shown is the value at these estimates), and there the Laplace approximation is unreliable. A log link "
        "keeps every mean positive."
    )
    if no_glm:
        text += " The GLM comparison is left out: the GLM's own maximum lies on that edge too."
    return text


def at_edge(warnings: list[str], family: str, link: str, edge: bool, converged: bool, no_glm: bool,
            max_iter: int, tol: float) -> list[str]:
    """The warnings of a fit under a link whose means have an edge (``edge``: e.g. Poisson or Gamma with the
    identity link): when the fit stopped short (``not converged``) or the GLM's own maximum lies on the edge
    (``no_glm``), :func:`mean_at_edge` replaces the generic advice (more iterations, another tolerance), which
    does not help against that edge. Other fits keep their warnings."""
    if not edge or (converged and not no_glm):
        return warnings
    generic = not_converged(max_iter, tol)
    return [w for w in warnings if w != generic] + [mean_at_edge(family, link, no_glm)]


def few_groups(n_groups: int) -> str:
    return (
        f"Only {n_groups} groups: the random-intercept variance is estimated from very few groups and may be "
        "unstable; interpret it and the ICC with caution."
    )


def separation_in_frame(names: list[str], X: np.ndarray | None, y: np.ndarray, beta: np.ndarray, mu: np.ndarray,
                        parts: list[list[dict | None]] | None = None) -> list[str]:
    """Signs of complete or quasi-complete separation in binomial data, naming the predictors, for a whole model
    frame: ``X`` the design with its column ``names`` (the intercept's column "(Intercept)" is not a predictor),
    or instead ``parts``, the :func:`design_columns` of its runs of rows taken earlier; ``beta`` the coefficients
    on those columns (NaN for a dropped one), ``mu`` the fitted probabilities. The same two signs: a two-valued
    predictor with a level whose responses are all 0 or all 1, or a coefficient above 10 per standard deviation
    of its predictor; else most fitted probabilities at 0 or 1."""
    extreme = int(np.sum((mu < 1e-8) | (mu > 1 - 1e-8)))
    if parts is None:
        assert X is not None
        parts = [design_columns(names, X, y)]
    return separation_of_parts(names, parts, beta, extreme, int(mu.size))


def design_columns(names: list[str], X: np.ndarray, y: np.ndarray) -> list[dict | None]:
    """What :func:`separation_of_parts` needs of some rows of a design, per column (None for the intercept):
    ``values``, {value: (all y == 0, all y == 1)} for a column with one or two distinct values on these rows
    (None for more), and the column's count, mean and sum of squared deviations. The columns are screened
    together: one with more than two values in its first 64 rows has more (no pass over its rows); the others'
    values and their responses are a few boolean passes over all of them at once (numpy's calls per column cost
    more than the arithmetic on a small model's rows), by pieces of rows (:func:`_two_values`)."""
    n = X.shape[0]
    cols = [j for j, name in enumerate(names) if name != "(Intercept)"]
    values: dict[int, dict | None] = {}
    if n and cols:
        head = np.sort(X[:64, cols], axis=0)
        few = [j for j, d in zip(cols, np.count_nonzero(np.diff(head, axis=0), axis=0)) if d <= 1]
        if few:
            first, second, more, some_y = _two_values(X, few, y)
            for i, j in enumerate(few):
                # all(y == 0) on a value's rows: none of them has y != 0 (some_y[0]), all(y == 1): none has y != 1
                at_first = (not some_y[0][0, i], not some_y[1][0, i])
                if np.isnan(second[i]):  # constant on these rows
                    values[j] = {float(first[i]): at_first}
                elif not more[i]:
                    values[j] = {float(first[i]): at_first,
                                 float(second[i]): (not some_y[0][1, i], not some_y[1][1, i])}
    means, m2 = column_moments(X) if n and cols else (np.zeros(len(names)), np.zeros(len(names)))
    out: list[dict | None] = []
    for j, name in enumerate(names):
        if name == "(Intercept)":
            out.append(None)
            continue
        if n == 0:
            out.append({"values": {}, "n": 0, "mean": 0.0, "m2": 0.0})
            continue
        out.append({"values": values.get(j), "n": int(n), "mean": float(means[j]), "m2": float(m2[j])})
    return out


MOMENT_PIECE = 16384  # rows per piece of column_moments and _two_values (a piece's temporaries stay in cache)


def _two_values(X: np.ndarray, few: list[int], y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """For the columns ``few`` of X: each one's first value, its second (NaN for none), whether a third occurs, and
    whether some row has y != 0 (``some_y[0]``) or y != 1 (``some_y[1]``), each a 2 x k array: row 0 among the
    rows at the first value, row 1 among the others. By pieces of rows (cache-sized temporaries; the booleans of
    all rows at once were a first fit's page faults)."""
    k = len(few)
    first = X[0, few].astype(float)
    second = np.full(k, np.nan)
    more = np.zeros(k, dtype=bool)
    not0, not1 = np.zeros((2, k), dtype=bool), np.zeros((2, k), dtype=bool)
    for a in range(0, X.shape[0], MOMENT_PIECE):
        piece = X[a:a + MOMENT_PIECE, few]
        other = piece != first  # rows not at the first value
        new = np.isnan(second) & other.any(axis=0)
        if new.any():  # a column's second value: its first row off the first value
            second[new] = piece[np.argmax(other[:, new], axis=0), np.flatnonzero(new)]
        more |= np.any(other & (piece != second), axis=0)  # (a NaN second: no row here is off the first value)
        same = ~other
        y_not0, y_not1 = (y[a:a + MOMENT_PIECE] != 0)[:, None], (y[a:a + MOMENT_PIECE] != 1)[:, None]
        not0[0] |= np.any(same & y_not0, axis=0)
        not1[0] |= np.any(same & y_not1, axis=0)
        not0[1] |= np.any(other & y_not0, axis=0)
        not1[1] |= np.any(other & y_not1, axis=0)
    return first, second, more, (not0, not1)


def column_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns' means and sums of squared deviations from them, by pieces of rows, each piece's own two
    passes combined as Chan, Golub and LeVeque's pairwise update: one pass over X's memory with no n-row temporary
    (the deviations of every row at once, a fresh 8 MB per column of a million rows, cost a process's first fit
    their page faults)."""
    n, p = X.shape
    means, m2 = np.zeros(p), np.zeros(p)
    count = 0
    for a in range(0, n, MOMENT_PIECE):
        piece = X[a:a + MOMENT_PIECE]
        k = piece.shape[0]
        mean_k = piece.sum(axis=0) / k
        dev = piece - mean_k
        delta = mean_k - means
        total = count + k
        m2 += np.einsum("ij,ij->j", dev, dev) + delta * delta * (count * k / total)
        means += delta * (k / total)
        count = total
    return means, m2


def separation_of_parts(names: list[str], parts: list[list[dict | None]], beta: np.ndarray, extreme: int,
                        n: int) -> list[str]:
    """:func:`separation_in_frame` from the :func:`design_columns` of blocks of rows (``parts``), the coefficients,
    and the number of fitted probabilities at 0 or 1 (``extreme``) among the ``n`` rows."""
    flagged = []
    for j, name in enumerate(names):
        if name == "(Intercept)":
            continue
        cols: list[dict] = [c for c in (p[j] for p in parts) if c is not None and c["n"]]
        levels: dict | None = {}
        for c in cols:
            if c["values"] is None or levels is None:
                levels = None
                break
            for value, (zeros, ones) in c["values"].items():
                z0, o0 = levels.get(value, (True, True))
                levels[value] = (z0 and zeros, o0 and ones)
        if levels is not None and len(levels) == 2 and any(z or o for z, o in levels.values()):
            flagged.append(name)
            continue
        count, mean, m2 = 0, 0.0, 0.0  # pooled (Chan et al.)
        for c in cols:
            delta, total = c["mean"] - mean, count + c["n"]
            mean += delta * c["n"] / total
            m2 += c["m2"] + delta * delta * count * c["n"] / total
            count = total
        sd = float(np.sqrt(m2 / count)) if count else 0.0
        if np.isfinite(beta[j]) and sd > 0 and abs(beta[j]) * sd > 10.0:
            flagged.append(name)
    return _separation_messages(flagged, extreme / n if n else 0.0)


def _separation_messages(flagged: list[str], extreme: float) -> list[str]:
    out = [
        f"Possible separation: the response is (almost) perfectly predicted by '{name}', so its coefficient "
        "and standard error may be unreliable (very large). Consider removing or combining categories of that "
        "predictor."
        for name in flagged
    ]
    if not out and extreme > 0.5:
        out.append(
            "Possible separation: most fitted probabilities are 0 or 1; coefficients and standard errors may "
            "be unreliable."
        )
    return out


SINGULAR_GENERAL = (
    "Singular fit: at least one random-effect variance is at or near zero, or a correlation is at +/-1, on the "
    "boundary of the parameter space. The grouping factors may explain very little of the variation for that "
    "term, or the data may not hold enough information to estimate every variance and correlation asked for. "
    "Interpret the variance components with caution and consider a simpler random-effects structure."
)
