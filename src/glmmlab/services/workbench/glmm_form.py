"""The GLMM form of the workbench: its options (families, links, defaults and limits), and its checks.

The form comes as a plain dict (the web app's body, read by :class:`Form`). :func:`check_form` checks it against
the dataset and returns the fit's ``spec`` or raises :class:`FieldError` naming the control: the random-intercept
form (``response``, ``fixed``, ``group``: ``y ~ x + (1 | g)`` as the product page describes it) or the general form
(a ``formula``: the roles and builders' formula or a typed "Model formula", whose model frame is built on the
dataset). :func:`check_formula_on` checks a typed formula before anything runs.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import FAMILIES as ALL_FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.formula import parse_formula
from glmmlab.engine.model.options import OPTIONS
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.modeling.modelframe import build_model_frame
from glmmlab.services.project import catalogue
from glmmlab.services.project.store import Project
from glmmlab.services.workbench import model_form

# The simple form offers the families of the product page; the general form (a formula) adds those with parameters
# of their own: the negative binomial (issue 11) and glmmTMB's families (issue 20).
FAMILIES = {k: v for k, v in ALL_FAMILIES.items() if not v.parameter_names and k != "ordinal"}  # the simple form's
GENERAL_FAMILIES = dict(ALL_FAMILIES)

FIELD_LABELS = {"dataset_id": "Dataset", "response": "Response Variable (Y)", "fixed": "Fixed Effects (X)",
                "group": "Group Variable (Random Intercept)", "family": "Distribution Family",
                "link": "Link Function", "conf_level": "Confidence Level", "max_iter": "Max Iterations",
                "tol": "Convergence Tolerance", "nagq": "Quadrature nodes", "name": "Model Name",
                "formula": "Model formula", "weights": "Weights", "offset": "Offset", "trials": "Trials",
                "reference_levels": "Reference level", "ddf": "Fixed-effect tests", "dispersion": "Dispersion",
                "zi": "Zero-inflation / hurdle model", "disp": "Dispersion model", "levels": "Category order"}


class FieldError(ServiceError):
    """A choice of the form that cannot be used; ``field`` names the control."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field)


class Form:
    """The GLMM form's values (a dict from the page) with the defaults of the options."""

    def __init__(self, body: dict[str, Any]):
        self.dataset_id = body.get("dataset_id")
        self.response: Optional[str] = body.get("response")
        self.fixed: list[str] = list(body.get("fixed") or [])
        self.group: Optional[str] = body.get("group")
        self.family: str = body.get("family") or "gaussian"
        self.link: Optional[str] = body.get("link")
        self.intercept = bool(body.get("intercept", True))
        self.conf_level = body.get("conf_level", 0.95)
        self.max_iter = body.get("max_iter", 100)
        self.tol = body.get("tol", 1e-6)
        self.nagq = body.get("nagq", 1)
        self.ddf = body.get("ddf") or "auto"
        self.dispersion = body.get("dispersion") or "estimated"
        self.formula: Optional[str] = body.get("formula")
        self.weights: Optional[str] = body.get("weights")
        # glmmTMB's ziformula and dispformula (one-sided formulas; empty: none)
        self.zi: Optional[str] = (str(body.get("zi") or "").strip() or None)
        self.disp: Optional[str] = (str(body.get("disp") or "").strip() or None)
        self.levels: Optional[list[Any]] = body.get("levels") or None  # an ordinal response's order
        self.reference_levels: Optional[dict[str, str]] = body.get("reference_levels")
        self.form: Optional[dict[str, Any]] = body.get("form")


def form_options() -> dict[str, Any]:
    """Families, their links (canonical first), the form's defaults and the options' limits. ``families`` are the
    simple form's; ``general_families`` add those offered with a Model formula."""
    return {"families": [{"value": k, "label": f.label, "links": list(f.links), "canonical_link": f.links[0]}
                         for k, f in FAMILIES.items()],
            "general_families": [{"value": k, "label": f.label, "links": list(f.links),
                                  "canonical_link": f.links[0],
                                  "dispersion_links": [lk for lk in f.links if f.has_dispersion_parameter(LINKS[lk])]}
                                 for k, f in GENERAL_FAMILIES.items()],
            "dispersion": {"choices": list(OPTIONS["dispersion"].choices), "default": OPTIONS["dispersion"].default,
                           "label": OPTIONS["dispersion"].label, "help": OPTIONS["dispersion"].help},
            "defaults": {"intercept": True} | {o.name: o.default for o in OPTIONS.values()
                                               if o.name in ("family", "conf_level", "max_iter", "tol", "nagq")},
            "conf_level_range": [OPTIONS["conf_level"].low, OPTIONS["conf_level"].high],
            "limits": {o.name: {"low": o.low, "high": o.high, "label": o.label, "rule": o.rule()}
                       for o in OPTIONS.values() if o.kind in ("int", "float")}}


def _number(value: Any, field: str, kind=float) -> Any:
    try:
        x = kind(value)
        if isinstance(value, bool) or (isinstance(x, float) and not math.isfinite(x)):
            raise ValueError
        if kind is int and float(value) != int(value):
            raise ValueError
        return x
    except (TypeError, ValueError, OverflowError):
        raise FieldError(field, f"{FIELD_LABELS[field]} must be {'a whole number' if kind is int else 'a number'}; "
                                f"got {value!r}.") from None


def check_form(project: Project, body: Form) -> tuple[Any, dict[str, Any]]:
    """Check the form against the dataset; returns (dataset info, fit spec) or raises FieldError. The page's own
    record of the form (``form``: every control, the roles and builders' model) goes into the spec as it is, so a
    saved model can fill the form again."""
    info, spec = check_general_form(project, body) if body.formula is not None else _check_simple_form(project, body)
    if isinstance(body.form, dict):
        spec["form"] = body.form
    return info, spec


def _check_simple_form(project: Project, body: Form) -> tuple[Any, dict[str, Any]]:
    info = _dataset(project, body.dataset_id)
    cols = {c.name: c for c in info.columns}
    if not body.response:
        raise FieldError("response", "Choose a Response Variable (Y).")
    if body.response not in cols:
        raise FieldError("response", f"Dataset '{info.name}' has no column '{body.response}'.")
    family = str(body.family or "").lower()
    if cols[body.response].dtype == "boolean":
        if family != "binomial":
            raise FieldError("response", f"'{body.response}' is boolean: it can be the response of the Binomial "
                                         "family (true = 1, false = 0); choose Binomial (Logistic).")
    elif not cols[body.response].numeric:
        raise FieldError("response", f"Response Variable (Y) must be numeric or boolean; '{body.response}' is "
                                     f"{cols[body.response].dtype}. Only numeric columns are available.")
    if len(set(body.fixed)) != len(body.fixed):
        raise FieldError("fixed", "Each Fixed Effects (X) column can be chosen once.")
    for f in body.fixed:
        if f not in cols:
            raise FieldError("fixed", f"Dataset '{info.name}' has no column '{f}'.")
        if not cols[f].numeric:
            raise FieldError("fixed", f"Fixed Effects (X) must be numeric; '{f}' is {cols[f].dtype}. "
                                      "Convert categorical columns with Data > Dummy Coding first.")
    if body.response in body.fixed:
        raise FieldError("fixed", f"'{body.response}' is the Response Variable (Y); it cannot also be a fixed effect.")
    if not body.group:
        raise FieldError("group", "Choose a Group Variable (Random Intercept): a GLMM needs groups.")
    if body.group not in cols:
        raise FieldError("group", f"Dataset '{info.name}' has no column '{body.group}'.")
    # any column can hold the groups (numeric identifiers included): its values are the groups' labels, a factor
    if body.group == body.response or body.group in body.fixed:
        raise FieldError("group", f"'{body.group}' is already the response or a fixed effect.")
    if not body.intercept and not body.fixed:
        raise FieldError("fixed", "Without an intercept, choose at least one Fixed Effects (X) column.")
    family, link, options = check_options(body, FAMILIES)
    spec = {"response": body.response, "fixed": list(body.fixed), "group": body.group, "family": family,
            "link": link, "intercept": bool(body.intercept), **options}
    return info, spec


def check_options(body: Form, families: dict) -> tuple[str, str, dict[str, Any]]:
    """The family, link and fit options of the form, checked (FieldError names the control)."""
    family = str(body.family or "").lower()
    if family not in families:
        extra = (f" ({ALL_FAMILIES[family].label} is fitted from a Model formula: send the formula)"
                 if family in ALL_FAMILIES else "")
        raise FieldError("family", f"Distribution Family must be one of {', '.join(families)}; got "
                                   f"{body.family!r}{extra}.")
    links = families[family].links
    link = str(body.link).lower() if body.link else links[0]
    if link not in links:
        raise FieldError("link", f"The {families[family].label} family offers the links {', '.join(links)}; "
                                 f"not {body.link!r}.")
    # the limits are the options' one declaration (glmmlab.engine.model.options), in the form's words
    lv, it, tl, nq = OPTIONS["conf_level"], OPTIONS["max_iter"], OPTIONS["tol"], OPTIONS["nagq"]
    assert lv.low is not None and lv.high is not None  # a number option has both bounds
    level = _number(body.conf_level, "conf_level")
    if not lv.low <= level <= lv.high:
        raise FieldError("conf_level", f"Confidence Level must be between {lv.low * 100:g} and {lv.high * 100:g} (%); "
                                       f"got {level * 100:g}.")
    max_iter = _number(body.max_iter, "max_iter", int)
    if not it.low <= max_iter <= it.high:
        raise FieldError("max_iter", f"Max Iterations must be between {it.low:g} and {it.high:g}.")
    tol = _number(body.tol, "tol")
    if not tl.low < tol < tl.high:
        raise FieldError("tol", "Convergence Tolerance must be greater than 0 and less than 1 (for example 1e-6).")
    nagq = _number(body.nagq, "nagq", int)
    if not nq.low <= nagq <= nq.high:
        raise FieldError("nagq", f"Quadrature nodes must be between {nq.low:g} and {nq.high:g} (1 is the Laplace "
                                 "approximation).")
    ddf = str(body.ddf or "auto").strip().lower()
    if ddf not in OPTIONS["ddf"].choices:
        raise FieldError("ddf", f"Fixed-effect tests must be one of {', '.join(OPTIONS['ddf'].choices)}; "
                                f"got {body.ddf!r}.")
    if ddf == "satterthwaite" and (family, link) != ("gaussian", "identity"):
        raise FieldError("ddf", "Satterthwaite t tests are for the Gaussian family with the identity link; choose Wald "
                                "z tests.")
    dispersion = str(body.dispersion or "estimated").strip().lower()
    if dispersion not in OPTIONS["dispersion"].choices:
        raise FieldError("dispersion", f"Dispersion must be one of {', '.join(OPTIONS['dispersion'].choices)}; "
                                       f"got {body.dispersion!r}.")
    options: dict[str, Any] = {"conf_level": level, "max_iter": max_iter, "tol": tol, "nagq": nagq, "ddf": ddf}
    if dispersion != "estimated":
        if not families[family].has_dispersion_parameter(LINKS[link]):
            raise FieldError("dispersion", "Dispersion 'lme4' is for the Gamma family and the Gaussian family with a "
                                           "log or inverse link; this model has no dispersion to estimate.")
        options["dispersion"] = dispersion
    return family, link, options


_NAME = re.compile(r"`([^`]+)`|([A-Za-z.][A-Za-z0-9._]*)")


def formula_columns(formula: str, info) -> list[str]:
    """The dataset's columns a formula names (in the dataset's order): all that the model frame needs."""
    named = {a or b for a, b in _NAME.findall(formula)}
    return [c.name for c in info.columns if c.name in named]


def _dataset(project, dataset_id):
    if dataset_id in (None, ""):
        raise FieldError("dataset_id", "Choose a Dataset.")
    try:
        return catalogue.get_dataset(project, dataset_id)
    except (NotFound, ServiceError):
        raise FieldError("dataset_id", f"There is no dataset {dataset_id!r}; choose one from the list.") from None


def check_formula(project, info, formula: Optional[str], family: str, weights: Optional[str],
                  reference_levels: Optional[dict[str, str]] = None, zi: Optional[str] = None,
                  disp: Optional[str] = None, levels: Optional[list[Any]] = None):
    """Build the formula's model frame on the dataset (the fit's own builder): the model frame, or FieldError
    naming the Model formula (or the Weights column) with the builder's explanation."""
    text = (formula or "").strip()
    if not text:
        raise FieldError("formula", "Type a Model formula such as y ~ x + (1 | g), or build one with the form.")
    cols = {c.name: c for c in info.columns}
    if weights:
        if weights not in cols:
            raise FieldError("weights", f"Dataset '{info.name}' has no column '{weights}'.")
        if not cols[weights].numeric:
            raise FieldError("weights", f"Weights must be a numeric column; '{weights}' is {cols[weights].dtype}.")
    try:
        parse_formula(text)  # the formula's limits (length, nesting, terms) before the data are read
        side = [t for t in (zi, disp) if t]
        names = list(dict.fromkeys(formula_columns(text, info) + [c for t in side for c in formula_columns(t, info)]
                                   + ([weights] if weights else [])))
        frame = catalogue.read_frame(project, info.id, names) if names else pd.DataFrame(index=range(info.n_rows))
        return build_model_frame(frame, text, family=family, weights=weights or None,
                                 reference_levels=reference_levels or None, response_levels=levels,
                                 known_columns=[c.name for c in info.columns], zi=zi, disp=disp), names
    except GlmmInputError as exc:
        message = str(exc)
        field = "weights" if weights and message.startswith("weights") else \
            "reference_levels" if message.startswith("reference_levels") else \
            "levels" if message.startswith("levels") else \
            "zi" if zi and ("zi formula" in message or message.startswith("zi ") or "zero" in message) else \
            "disp" if disp and ("disp formula" in message or message.startswith("disp ")
                                or "dispersion" in message) else "formula"
        raise FieldError(field, message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")) from None


def check_general_form(project: Project, body: Form) -> tuple[Any, dict[str, Any]]:
    """The general form (a formula): dataset, family and options, then the formula on the data."""
    info = _dataset(project, body.dataset_id)
    family, link, options = check_options(body, GENERAL_FAMILIES)
    weights = (body.weights or "").strip() or None
    mf, columns = check_formula(project, info, body.formula, family, weights, body.reference_levels, body.zi,
                                body.disp, body.levels)
    spec = {"formula": (body.formula or "").strip(), "response": mf.response, "fixed": None, "group": None,
            "family": family, "link": link, "intercept": bool(mf.intercept), "weights": weights,
            "reference_levels": body.reference_levels or None, "columns": columns, **options,
            **({"levels": list(body.levels)} if body.levels and family == "ordinal" else {})}
    spec.update({k: v for k, v in (("zi", body.zi), ("disp", body.disp)) if v})  # only when given
    return info, spec


def check_formula_on(project: Project, dataset_id: Any, formula: Optional[str], family: str,
                     weights: Optional[str], reference_levels: Optional[dict[str, str]] = None,
                     levels: Optional[list[Any]] = None) -> dict[str, Any]:
    """The "Model formula" check before anything runs: the formula's response, fixed-effect columns and random
    terms on the dataset, its factors (levels and reference), its ``signature`` and ``form`` (how the form's
    controls express it; None with ``not_form`` saying why, see :mod:`glmmlab.services.workbench.model_form`), or
    FieldError (formula, weights, reference_levels, family or dataset_id)."""
    info = _dataset(project, dataset_id)
    family = str(family or "").lower()
    if family not in GENERAL_FAMILIES:
        raise FieldError("family", f"Distribution Family must be one of {', '.join(GENERAL_FAMILIES)}; "
                                   f"got {family!r}.")
    mf, _ = check_formula(project, info, formula, family, (weights or "").strip() or None, reference_levels,
                          levels=levels if family == "ordinal" else None)
    assert mf.recipe is not None  # build_model_frame always records one
    parsed = mf.recipe.formula
    form, why = model_form.form_of(parsed, mf, info.columns, family)
    return {"ok": True, "formula": (formula or "").strip(), "response": mf.response, "n_obs": int(mf.n),
            "n_excluded": int(mf.n_input - mf.n), "fixed_effects": list(mf.x_names),
            "random_terms": [{"component": t.component, "terms": list(t.names), "levels": len(t.levels),
                              "correlated": bool(t.correlated)} for t in mf.terms],
            "warnings": list(mf.warnings), "factors": model_form.factor_levels(mf),
            "signature": model_form.signature(parsed), "form": form, "not_form": why,
            # an ordinal response's categories in the order the fit uses (the page shows them and may reorder)
            **({"response_levels": list(mf.recipe.response_levels)} if mf.recipe.response_levels else {})}

