"""The limits of what one model may ask for, declared once as data and checked before any work.

Every front door (``glmmlab.glmm``/``fit_glmm``/``fit`` in Python, ``glmmlab fit``/``compare``, the web's formula
check and fits) parses formulas with :func:`glmmlab.engine.model.formula.parse_formula`, which checks the formula limits
first; the design's size is checked by :mod:`glmmlab.services.modeling.design` before a column is built, and the
coupled random-effects block of the general engine before its first evaluation. A refusal names the limit and its value.

Why these values:

- ``formula_chars`` 10,000: a formula of 300 covariates with 30-character names fits; the check of a formula on
  the web runs while a person types, so reading it must take milliseconds.
- ``nesting_depth`` 100: parentheses, function calls, unary signs, ``^`` and operators other than ``+`` chained
  on one level (``a - b - c``) nest the parsed tree; 100 levels are far more than a model needs and keep the
  parser and everything that walks the tree well inside Python's recursion limit (``+`` chains, the way long
  formulas are written, do not count: they are read as a balanced tree).
- ``fixed_terms`` 1,000 and ``random_terms`` 50: terms after expansion (``(a+b+c)^2`` is 6 terms; ``(x || g)``
  is 2 random terms). ``(a+...+o)^15`` would be 32,767 terms: refused before it is expanded. 50 random terms are
  more than any lme4 model in the literature uses; each is a covariance block the optimiser searches.
- ``power``: ``x^k`` crosses terms up to order k, so a k above the number of variables adds nothing and is taken
  as that number (R's terms() gives the same terms); no limit on k is needed, only that it is a whole number.
- ``echo_chars`` 120: what a message quotes of user text (a formula, a name) before "... (N characters)".
- ``design_cells`` 200,000,000 (1.5 GiB of float64): rows x columns of the fixed-effects design after factors are
  expanded into indicator columns; a factor of 100,000 levels on 100,000 rows would be 80 GB.
- ``design_columns`` 2,000: columns of the design (each a coefficient with a standard error). Preparing a fit
  costs n p^2 (the cross-products) and p^3 (their factorisation): a 5,000-level fixed factor on 20,000 rows took
  minutes before the fit started; a factor of thousands of levels is a grouping factor, (1 | f).
- ``coupled_block_bytes`` 2 GB: the dense coupled block of crossed random effects in the general engine
  (Q2 x Q2 doubles, Q2 the random effects outside the first grouping factor).
- ``interval_jobs`` 1: profile and bootstrap intervals of saved models running at once on the web; the others
  wait, queued. Each already uses every core (a process pool), so a second one at the same time would only share
  them and double the memory. The number of bootstrap samples is bounded by the ``nsim`` option (10 to 100,000,
  glmmlab.engine.model.options).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    formula_chars: int = 10_000
    nesting_depth: int = 100
    fixed_terms: int = 1_000
    random_terms: int = 50
    echo_chars: int = 120
    design_cells: int = 200_000_000
    design_columns: int = 2_000
    coupled_block_bytes: int = 2 * 1024 ** 3
    interval_jobs: int = 1


LIMITS = Limits()


def shorten(text: str, limit: int | None = None) -> str:
    """``text`` as a message quotes it: up to ``echo_chars`` characters, then "... (N characters)"."""
    limit = LIMITS.echo_chars if limit is None else limit
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def echo(text: str, limit: int | None = None) -> str:
    """``repr`` of user text for a message, shortened as :func:`shorten` does."""
    text = str(text)
    limit = LIMITS.echo_chars if limit is None else limit
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def mib(n_bytes: float) -> str:
    """A size for a message: 1.5 GB, 320 MB."""
    if n_bytes >= 1024 ** 3:
        return f"{n_bytes / 1024 ** 3:,.1f} GB"
    return f"{n_bytes / 1024 ** 2:,.0f} MB"
