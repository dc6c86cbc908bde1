"""An ordinal response read from a table: its ordered categories and each row's category number 1 .. K (what the
engine's ordinal family reads), and the fixed part without its intercept (the thresholds take its place).

The order of the categories:

- ``levels`` given (the ``levels`` option): that order; every value on the rows used must be one of them (a level
  no row has is dropped, with a warning: its threshold could not be estimated);
- a pandas categorical (ordered or not): its categories' order;
- text: the values sorted as factor levels are (code-point order, or numeric order when every value is a number
  written as text: ``"2" < "10"``);
- numbers: the distinct values in increasing order (``ordinal::clmm``'s integer codes), at most
  :data:`MAX_NUMERIC_LEVELS` of them (a numeric column with more is not a rating scale: it is refused).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.services.modeling.variables import _Fac, _Num, _show_levels

# the most distinct values a numeric column may have as an ordinal response (more: a measurement, not categories)
MAX_NUMERIC_LEVELS = 50


def _label(v: float) -> str:
    from glmmlab.engine.model.formula import format_number

    return format_number(float(v))


def ordinal_response(label: str, value: _Num | _Fac, rows: np.ndarray, levels: Sequence | None,
                     warnings: list[str]) -> tuple[np.ndarray, list[str]]:
    """(category numbers 1 .. K on the rows used, the K categories in order) of the response ``label``."""
    if isinstance(value, _Fac):
        codes = value.codes[rows]
        names = list(value.levels)
    else:
        x = value.values[rows]
        distinct = np.unique(x)
        if levels is None and distinct.size > MAX_NUMERIC_LEVELS:
            raise GlmmInputError(
                f"the ordinal response {label!r} is numeric with {distinct.size} distinct values; an ordinal "
                f"response has at most {MAX_NUMERIC_LEVELS} categories. Use another family for a measurement, or "
                "give the categories in order with the levels option")
        codes = np.searchsorted(distinct, x)
        names = [_label(v) for v in distinct]
    if levels is not None:
        codes, names = _reordered(label, codes, names, levels, warnings)
    present = np.bincount(codes, minlength=len(names)) > 0
    if not present.all():  # categories no row has: no threshold can be estimated next to them
        keep = np.flatnonzero(present)
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        dropped = [names[i] for i in np.flatnonzero(~present)]
        if levels is not None:
            warnings.append(f"the ordinal response {label!r} has no rows in the categories "
                            f"{_show_levels(dropped)}: they are left out")
        codes, names = remap[codes], [names[i] for i in keep]
    if len(names) < 2:
        raise GlmmInputError(
            f"the ordinal response {label!r} has a single category ({names[0]!r}) on the rows used; an ordinal "
            "model needs two or more ordered categories" if names else
            f"the ordinal response {label!r} has no category on the rows used")
    return codes.astype(float) + 1.0, names


def _reordered(label: str, codes: np.ndarray, names: list[str], levels: Sequence, warnings: list[str]
               ) -> tuple[np.ndarray, list[str]]:
    """The codes of ``names`` recoded in the order ``levels`` gives."""
    wanted = [level_text(v) for v in levels]
    if len(set(wanted)) != len(wanted):
        raise GlmmInputError(f"levels: the categories of the ordinal response {label!r} must be distinct; got "
                             f"{_show_levels(wanted)}")
    pos = {v: i for i, v in enumerate(wanted)}
    present = np.bincount(codes, minlength=len(names)) > 0
    missing = [n for n, p in zip(names, present) if p and n not in pos]
    if missing:
        raise GlmmInputError(
            f"levels: the ordinal response {label!r} has values {_show_levels(missing)} that are not among the "
            f"levels given ({_show_levels(wanted)}); list every category, lowest first")
    remap = np.array([pos.get(n, -1) for n in names], dtype=np.int64)
    return remap[codes], wanted


def level_text(v) -> str:
    """A category of the ``levels`` option as the model frame labels it (numbers as R prints them)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return _label(float(v))
    return str(v)


def without_intercept(formula_text: str, intercept: bool, X: np.ndarray, x_names: list[str], assign: list[int]
                      ) -> tuple[np.ndarray, list[str], list[int]]:
    """The fixed-effects design of an ordinal model: R's model matrix of a formula with its intercept, less that
    column (``ordinal::clmm``'s: the thresholds take its place; the factors keep their treatment contrasts). A
    formula without the intercept (``0 +``, ``- 1``) would code its first factor in full, which the thresholds
    cannot be told apart from: it is refused."""
    if not intercept:
        raise GlmmInputError(
            f"formula {formula_text!r}: an ordinal model has no intercept of its own (its thresholds take its "
            "place), so '0 +' or '- 1' would leave a factor coded in full against them; write the formula "
            "without them")
    if x_names and x_names[0] == "(Intercept)":
        return np.ascontiguousarray(X[:, 1:]), x_names[1:], assign[1:]
    return X, x_names, assign
