"""The model specification: one object that every front door builds (the Python API, the command line, the web
form through the API, the Dask path) and the fit consumes. Its option rules are declared once, in
:mod:`glmmlab.engine.model.options`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link
from glmmlab.engine.model.formula import Formula, is_syntactic, parse_formula
from glmmlab.engine.model.limits import echo
from glmmlab.engine.model.options import OPTIONS, check_options, nondefault_options, resolve_ddf


def _quote(name: str) -> str:
    return name if is_syntactic(name) else f"`{name}`"


def random_intercept_formula(response: str, group: str, fixed: list[str] | tuple[str, ...] | None = None,
                             intercept: bool = True) -> str:
    """The formula of the random-intercept form ``--response Y --group G --fixed X1 X2``:
    ``Y ~ X1 + X2 + (1 | G)`` (``Y ~ 0 + X1 + X2 + (1 | G)`` without the intercept). Names R would not accept
    unquoted are backquoted. String, categorical and boolean fixed columns become factors when the formula is
    built into a model frame, exactly as with ``--formula``."""
    for what, v in (("response", response), ("group", group)):
        if not isinstance(v, str) or not v:
            raise GlmmInputError(f"{what} must be a column name; got {v!r}")
    fixed = list(fixed or [])
    for v in fixed:
        if not isinstance(v, str) or not v:
            raise GlmmInputError(f"fixed effects must be column names; got {v!r}")
        if "`" in v:
            raise GlmmInputError(f"column name {v!r} contains a backquote, which formulas cannot quote; rename it")
    parts = ([] if intercept else ["0"]) + [_quote(v) for v in fixed]
    if not parts:
        parts = ["1"]
    return f"{_quote(response)} ~ {' + '.join(parts)} + (1 | {_quote(group)})"


@dataclass(frozen=True)
class ModelSpec:
    """What to fit: a formula in lme4's language, the family and link, prior weights and an offset (column
    names), the reference level of factors (``{column: level}``, R's ``relevel`` in data preparation: ``{"f": "b"}``
    gives the coefficients ``fa``, ``fc``), and the fit's options (defaults from
    :data:`~glmmlab.engine.model.options.OPTIONS`)."""

    formula: str
    family: str = OPTIONS["family"].default
    link: str | None = OPTIONS["link"].default
    weights: str | None = None
    offset: str | None = None
    conf_level: float = OPTIONS["conf_level"].default
    max_iter: int = OPTIONS["max_iter"].default
    tol: float = OPTIONS["tol"].default
    nagq: int = OPTIONS["nagq"].default
    se: str = OPTIONS["se"].default
    reference_levels: Mapping[str, str] | None = field(default=None, hash=False)
    reml: bool = OPTIONS["reml"].default
    ddf: str = OPTIONS["ddf"].default
    dispersion: str = OPTIONS["dispersion"].default
    tweedie_power: float | None = OPTIONS["tweedie_power"].default
    # glmmTMB's ziformula and dispformula: one-sided formulas of a zero-inflation (or hurdle) model and of the
    # dispersion, e.g. "~ mined"; None: no zero model, the family's constant dispersion
    zi: str | None = None
    disp: str | None = None
    # the ordinal family: the response's categories in order, lowest first (default: a categorical's order, else
    # the values sorted)
    levels: Sequence[Any] | None = field(default=None, hash=False)

    @cached_property
    def parsed(self) -> Formula:
        """The formula, parsed once (the front doors, the model frame and the model's description use this
        object, not the text again)."""
        return parse_formula(self.formula)

    @classmethod
    def random_intercept(cls, response: str, group: str, fixed: list[str] | None = None, intercept: bool = True,
                         **options) -> "ModelSpec":
        """The spec of the random-intercept form (``--response/--group/--fixed``)."""
        return cls(random_intercept_formula(response, group, fixed, intercept), **options)

    def check(self) -> tuple[Family, Link]:
        """Check every option (messages name the option and its rule); the family and link objects. Checked once
        (a fit's front door, model frame and description each ask); a spec that fails raises each time."""
        return self._checked

    @cached_property
    def _checked(self) -> tuple[Family, Link]:
        if not isinstance(self.formula, str) or not self.formula.strip():
            raise GlmmInputError("formula must be text such as 'y ~ x + (1 | g)'")
        for option, col in (("weights", self.weights), ("offset", self.offset)):
            if col is not None and (not isinstance(col, str) or not col):
                raise GlmmInputError(f"{option} must be a column name; got {col!r}")
        check_reference_levels(self.reference_levels)
        for key in ("zi", "disp"):
            if getattr(self, key) is not None:
                side_formula(key, getattr(self, key))
        fam, lk = check_options(self.family, self.link, self.conf_level, self.max_iter, self.tol, self.nagq,
                                self.se, self.reml, self.ddf, self.dispersion, self.tweedie_power)
        if self.levels is not None:  # the ordinal family's option (its module is loaded only when asked for)
            from glmmlab.engine.families.ordinal import check_levels

            check_levels(self.levels, fam.name)
        return fam, lk

    def document(self, response: str, intercept: bool, fixed: list[str] | None = None, group: str | None = None,
                 level_label: Any = str) -> dict:
        """The ``model`` block of the fit's JSON document: what was asked for, built here only. ``response`` and
        ``intercept`` as the model frame reads them; ``fixed`` and ``group`` the columns of the random-intercept
        form over plain numeric columns (None otherwise); ``level_label`` writes a reference level as the model
        frame labels it. Options at their defaults that the contract does not list are left out."""
        fam, lk = self.check()

        model: dict[str, Any] = {
            "response": response, "fixed": fixed, "group": group, "family": fam.name, "link": lk.name,
            "intercept": bool(intercept), "conf_level": float(self.conf_level), "nagq": int(self.nagq),
            "max_iter": int(self.max_iter), "tol": float(self.tol), "formula": self.formula.strip(),
            "weights": self.weights, "offset": self.offset,
            **nondefault_options(self.reml, resolve_ddf(self.ddf, fam.name, lk.name), self.dispersion,
                                 self.tweedie_power),
        }
        for key in ("zi", "disp"):  # only when given: a document without them keeps its keys
            if getattr(self, key) is not None:
                model[key] = str(getattr(self, key)).strip()
        if self.levels is not None:  # the ordinal response's order, when given
            model["levels"] = [level_label(v) for v in self.levels]
        if self.reference_levels:  # only when asked for: a document without them keeps its keys
            model["reference_levels"] = {str(k): level_label(v) for k, v in self.reference_levels.items()}
        return model

    def options(self) -> dict:
        """The fit's options (everything but the formula, weights, offset and reference levels)."""
        d = asdict(self)
        for k in ("formula", "weights", "offset", "reference_levels", "zi", "disp", "levels"):
            d.pop(k)
        return d


def side_formula(key: str, text: str) -> Formula:
    """A zero or dispersion model's one-sided formula (``"~ mined"``, ``"~ 1 + (1 | site)"``) parsed as the right
    side of a formula; refused in words when it is not one-sided, or a dispersion model has a random term."""
    if not isinstance(text, str) or not text.strip():
        raise GlmmInputError(f"{key} must be a one-sided formula such as '~ x' or '~ 1'; got {text!r}")
    body = text.strip()
    if not body.startswith("~"):
        if "~" in body:
            raise GlmmInputError(f"{key} formula {echo(text)} must be one-sided (no response): write '~ ...'")
        body = "~ " + body
    pf = parse_formula("zi_response__ " + body)
    for r in pf.random:
        if r.structure not in ("", "us"):
            raise GlmmInputError(
                f"{key} formula {echo(text)}: a covariance structure ({r.structure}) is not offered in the {key} "
                "model; write its random term plainly, e.g. (1 | g)")
    if pf.random and key != "zi":
        raise GlmmInputError(
            f"{key} formula {echo(text)} has a random term: the {key} model takes fixed effects only (glmmTMB's "
            "dispformula too); keep its fixed effects")
    return pf


def check_reference_levels(reference_levels: object) -> None:
    """``reference_levels`` is None or a mapping of column names to levels (text, a number or a boolean); whether
    each names a factor of the model and one of its levels is checked on the data (the model frame)."""
    if reference_levels is None:
        return
    if not isinstance(reference_levels, Mapping):
        raise GlmmInputError("reference_levels must map factor columns to their reference level, e.g. "
                             f"{{'f': 'b'}}; got {type(reference_levels).__name__}")
    for col, level in reference_levels.items():
        if not isinstance(col, str) or not col:
            raise GlmmInputError(f"reference_levels: the keys are factor column names; got {col!r}")
        if level is None or not isinstance(level, (str, bool, int, float)) or level == "":
            raise GlmmInputError(f"reference_levels: the reference level of {col!r} must be one of its levels "
                                 f"(text); got {level!r}")
