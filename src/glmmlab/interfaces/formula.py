"""A small parser for lme4-style random-intercept formulas: ``y ~ x1 + x2 + (1 | g)``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from glmmlab.engine.errors import GlmmInputError

_NAME = r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`"


@dataclass
class FormulaSpec:
    response: str
    fixed: list[str]
    group: str
    intercept: bool


def _name(token: str, formula: str) -> str:
    token = token.strip()
    if not re.fullmatch(_NAME, token):
        raise GlmmInputError(
            f"cannot read term {token!r} in formula {formula!r}: use plain column names joined by '+' "
            "(interactions and transformations are not supported; add such columns to the data first)"
        )
    return token.strip("`")


def parse_formula(formula: str) -> FormulaSpec:
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise GlmmInputError(f"formula must look like 'y ~ x1 + x2 + (1 | g)'; got {formula!r}")
    lhs, rhs = formula.split("~")
    response = _name(lhs, formula)
    random = re.findall(r"\(\s*([^()|]*)\|\s*([^()]*)\)", rhs)
    if len(random) != 1:
        raise GlmmInputError(
            f"formula {formula!r} needs exactly one random-intercept term '(1 | group)'; "
            "random slopes and crossed random effects are not supported"
        )
    inside, group = random[0]
    if inside.strip() != "1":
        raise GlmmInputError(
            f"only random intercepts '(1 | {group.strip()})' are supported; got '({inside.strip()} | {group.strip()})'"
        )
    group = _name(group, formula)
    rest = re.sub(r"\(\s*[^()|]*\|\s*[^()]*\)", "", rhs)
    intercept = True
    terms: list[str] = []
    for sign, term in re.findall(r"([+-]?)\s*([^+-]+)", rest):
        term = term.strip()
        if not term:
            continue
        if term in ("0", "1"):
            if sign == "-" or term == "0":
                intercept = False if (term == "1" and sign == "-") or term == "0" else intercept
            continue
        if sign == "-":
            raise GlmmInputError(f"cannot remove term '{term}' in formula {formula!r}; just leave it out")
        terms.append(_name(term, formula))
    return FormulaSpec(response=response, fixed=terms, group=group, intercept=intercept)
