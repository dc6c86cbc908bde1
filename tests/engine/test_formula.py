"""The parser of lme4's model language (glmmlab.engine.model.formula): R's precedence, terms() expansion and labels."""

from __future__ import annotations

import json

import pytest

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import format_number, is_syntactic, parse_expression, parse_formula
from tests.conftest import MODELS, model_case_names, reference_files

CASES = model_case_names()  # a failing param when the folder is missing or empty

# What each reference formula must expand to: response label, fixed term labels, intercept, offsets and the
# random terms as (component, lhs labels, lhs intercept, correlated).
EXPECTED = {
    "cbpp_trials": ("cbind(incidence, size - incidence)", ["period"], True, [], [("herd", [], True, True)]),
    "contraception_slope": ("use", ["age", "I(age^2)", "urban", "livch"], True, [],
                            [("district", ["urban"], True, True)]),
    "exam_interaction": ("normexam", ["standLRT", "sex", "standLRT:sex"], True, [], [("school", [], True, True)]),
    "grouseticks_nested": ("TICKS", ["YEAR96", "YEAR97", "cHEIGHT"], True, [],
                           [("LOCATION", [], True, True), ("BROOD:LOCATION", [], True, True)]),
    "mmmec_offset": ("deaths", ["uvb"], True, ["log(expected)"], [("region", [], True, True)]),
    "pastes_nested": ("strength", [], True, [], [("batch", [], True, True), ("cask:batch", [], True, True)]),
    "penicillin_crossed": ("diameter", [], True, [], [("plate", [], True, True), ("sample", [], True, True)]),
    "salamanders_negbin": ("count", ["mined"], True, [], [("site", [], True, True)]),
    "salamanders_negbin_spp": ("count", ["spp", "mined"], True, [], [("site", [], True, True)]),
    "sim_binomial_proportion": ("prop", ["x"], True, [], [("g", [], True, True)]),
    "sim_binomial_slope": ("y", ["x1", "x2"], True, [], [("g", ["x1"], True, True)]),
    "sim_gamma_log_slope": ("y", ["x1", "x2"], True, [], [("g", ["x1"], True, True)]),
    "sim_lmm_weights": ("y", ["x"], True, [], [("g", [], True, True)]),
    "sim_poisson_crossed_slope": ("y", ["x"], True, [], [("a", ["x"], True, True), ("b", [], True, True)]),
    "sleepstudy_slope": ("Reaction", ["Days"], True, [], [("Subject", ["Days"], True, True)]),
    "sleepstudy_uncorrelated": ("Reaction", ["Days"], True, [],
                                [("Subject", [], True, False), ("Subject", ["Days"], False, False)]),
    "verbagg_crossed": ("r2", ["Anger", "Gender_M", "btype_scold", "btype_shout", "situ_self", "mode_do"], True,
                        [], [("id", [], True, True), ("item", [], True, True)]),
}


def _shape(text: str):
    f = parse_formula(text)
    return (f.response_label, f.fixed.labels, f.fixed.intercept, [o.deparse() for o in f.fixed.offsets],
            [(r.component, r.lhs.labels, r.lhs.intercept, r.correlated) for r in f.random])


def test_every_reference_case_has_an_expectation():
    names = [p.stem for p in reference_files(MODELS)]
    assert names, f"no reference cases under {MODELS}"
    assert set(names) <= set(EXPECTED), f"add the new cases to EXPECTED: {set(names) - set(EXPECTED)}"


@pytest.mark.parametrize("case", CASES)
def test_reference_formulas(case):
    formula = json.loads((MODELS / f"{case}.json").read_text())["formula"]
    assert _shape(formula) == EXPECTED[case]


@pytest.mark.parametrize("text, labels, intercept", [
    ("y ~ a*b", ["a", "b", "a:b"], True),
    ("y ~ a*b*c", ["a", "b", "c", "a:b", "a:c", "b:c", "a:b:c"], True),
    ("y ~ a:b + a", ["a", "a:b"], True),  # R orders terms by degree
    ("y ~ b:a + a", ["a", "b:a"], True),  # the label follows the variables' first appearance
    ("y ~ a + b + a:b + b:a + a", ["a", "b", "a:b"], True),  # duplicates collapse
    ("y ~ a:a", ["a"], True),
    ("y ~ (a + b + c)^2", ["a", "b", "c", "a:b", "a:c", "b:c"], True),
    ("y ~ (a + b + c)^2 - a:b", ["a", "b", "c", "a:c", "b:c"], True),
    ("y ~ a*b - a", ["b", "a:b"], True),
    ("y ~ a/b", ["a", "a:b"], True),
    ("y ~ (a + b)/c", ["a", "b", "a:b:c"], True),
    ("y ~ 0 + a", ["a"], False),
    ("y ~ a + 0", ["a"], False),
    ("y ~ a - 1", ["a"], False),
    ("y ~ -1 + a", ["a"], False),
    ("y ~ 0 + a + 1", ["a"], True),
    ("y ~ 1", [], True),
    ("y ~ a + (a)", ["a"], True),
    ("y ~ I(x ^ 2) + I(x/2) + I(-x + 3*z) + I((x + 1) * 2)",
     ["I(x^2)", "I(x/2)", "I(-x + 3 * z)", "I((x + 1) * 2)"], True),
    ("y ~ I(x**2)", ["I(x^2)"], True),
    ("y ~ log(x) + exp(x) + sqrt(x) + scale(x) + log(x, 2)",
     ["log(x)", "exp(x)", "sqrt(x)", "scale(x)", "log(x, 2)"], True),
    ("y ~ I(1e5 * x) + I(0.0001 * x) + I(123456 * x) + I(2.50 * x) + I(2L * x)",
     ["I(1e+05 * x)", "I(1e-04 * x)", "I(123456 * x)", "I(2.5 * x)", "I(2 * x)"], True),
    ("y ~ `my var` + `ok` + `2x`:f", ["`my var`", "ok", "`2x`:f"], True),
    ("y ~ x.1 + .x + x_2", ["x.1", ".x", "x_2"], True),
    ("y ~ log(x):f", ["log(x):f"], True),
    ("y ~ factor(z)", ["factor(z)"], True),
])
def test_fixed_expansion(text, labels, intercept):
    f = parse_formula(text + " + (1 | g)")
    assert f.fixed.labels == labels
    assert f.fixed.intercept is intercept


def test_precedence():
    # ^ binds tighter than unary minus, which binds tighter than ':'; '*' and '/' tighter than '+'
    assert parse_expression("-a^2").deparse() == "-a^2"
    assert parse_formula("y ~ a + b*c + (1|g)").fixed.labels == ["a", "b", "c", "b:c"]
    assert parse_formula("y ~ a:b*c + (1|g)").fixed.labels == ["c", "a:b", "a:b:c"]
    assert parse_expression("a - b - c").deparse() == "a - b - c"
    e = parse_expression("a - b - c")
    assert e.left.deparse() == "a - b"  # left-associative
    e = parse_expression("a^b^c")
    assert e.right.deparse() == "b^c"  # right-associative


def test_response_forms():
    assert parse_formula("cbind(s, n - s) ~ x + (1|g)").response_label == "cbind(s, n - s)"
    assert parse_formula("log(y) ~ x + (1|g)").response_label == "log(y)"
    assert parse_formula("I(y/n) ~ x + (1|g)").response_label == "I(y/n)"
    f = parse_formula("`my y` ~ x + (1|g)")
    assert f.response_label == "`my y`"
    assert f.columns() == ["my y", "x", "g"]


def test_offsets_are_not_terms():
    f = parse_formula("y ~ x + offset(log(e)) + offset(t) + (1 | g)")
    assert f.fixed.labels == ["x"]
    assert [o.deparse() for o in f.fixed.offsets] == ["log(e)", "t"]
    assert f.columns() == ["y", "x", "e", "t", "g"]


@pytest.mark.parametrize("text, random", [
    ("y ~ x + (x | g)", [("g", ["x"], True, True)]),
    ("y ~ x + (1 + x | g)", [("g", ["x"], True, True)]),
    ("y ~ x + (0 + x | g)", [("g", ["x"], False, True)]),
    ("y ~ x + (x - 1 | g)", [("g", ["x"], False, True)]),
    ("y ~ x + (1 | g) + (0 + x | g)", [("g", [], True, True), ("g", ["x"], False, True)]),
    ("y ~ x + (x || g)", [("g", [], True, False), ("g", ["x"], False, False)]),
    ("y ~ x + (x + z || g)", [("g", [], True, False), ("g", ["x"], False, False), ("g", ["z"], False, False)]),
    ("y ~ x + (0 + x + z || g)", [("g", ["x"], False, False), ("g", ["z"], False, False)]),
    ("y ~ (1 | a/b)", [("a", [], True, True), ("b:a", [], True, True)]),
    ("y ~ (1 | a/b/c)", [("a", [], True, True), ("b:a", [], True, True), ("c:b:a", [], True, True)]),
    ("y ~ (x | a/b)", [("a", ["x"], True, True), ("b:a", ["x"], True, True)]),
    ("y ~ (1 | a:b)", [("a:b", [], True, True)]),
    ("y ~ (1 | a) + (1 | b)", [("a", [], True, True), ("b", [], True, True)]),
    ("y ~ (1 + f*x | g)", [("g", ["f", "x", "f:x"], True, True)]),
    ("y ~ (1 | `my group`)", [("`my group`", [], True, True)]),
    ("y ~ ((1 | g))", [("g", [], True, True)]),
])
def test_random_terms(text, random):
    f = parse_formula(text)
    assert [(r.component, r.lhs.labels, r.lhs.intercept, r.correlated) for r in f.random] == random


def test_random_group_columns():
    f = parse_formula("y ~ x + (1 | a/b)")
    assert f.columns() == ["y", "x", "a", "b"]
    assert [r.written for r in f.random] == ["(1 | a/b)", "(1 | a/b)"]


@pytest.mark.parametrize("text, needle", [
    ("y x + (1|g)", "unexpected"),
    ("y ~ x + (1|g) ~ z", "more than one '~'"),
    ("y + (1|g)", "needs a '~'"),
    ("", "formula must look like"),
    ("y ~ foo(x) + (1|g)", "unknown function foo()"),
    ("y ~ poly(x, 2) + (1|g)", "unknown function poly()"),
    ("y ~ log(x, 2, 3) + (1|g)", "log() takes 1 or 2 arguments"),
    ("y ~ x + 1 | g", "put the random term in parentheses"),
    ("y ~ x + (1 | g", "expected ')'"),
    ("y ~ x + (1 | g))", "unexpected ')'"),
    ("y ~ x + 2 + (1|g)", "the number 2 cannot be a term"),
    ("y ~ x == 1 + (1|g)", "comparisons"),
    ("y ~ 'x' + (1|g)", "backquotes"),
    ("y ~ x + (1 | g + h)", "grouping factor"),
    ("y ~ x + (1 | log(g))", "grouping factor"),
    ("y ~ x + (0 | g)", "has no effects"),
    ("y ~ x + (offset(z) | g)", "offset() cannot sit inside the random term"),
    ("y ~ x - (1 | g)", "cannot remove a random term"),
    ("y ~ cbind(a, b) + (1|g)", "cbind() belongs on the left"),
    ("y ~ (a + b)^x + (1|g)", "power must be a whole number"),
    ("y ~ a %in% b + (1|g)", "%in% is not supported"),
    ("y ~ I(x:z) + (1|g)", "is not arithmetic"),
    ("log(cbind(a, b)) ~ x + (1|g)", "cbind() must be the whole response"),
    ("(1|g) ~ x + (1|g)", "cannot be the response"),
    ("y ~ x + ((1 | g) | h)", "cannot sit inside another term"),
    ("y ~ x + `` + (1|g)", "empty backquoted name"),
])
def test_errors_name_the_problem(text, needle):
    with pytest.raises(GlmmInputError) as err:
        parse_formula(text)
    assert needle in str(err.value)


def test_number_format_is_rs():
    assert [format_number(v) for v in (2.0, 0.5, 1e5, 123456.0, 1e-4, 0.001, 1.5e-8, -3.25, 1e15, 0.1 + 0.2)] == [
        "2", "0.5", "1e+05", "123456", "1e-04", "0.001", "1.5e-08", "-3.25", "1e+15", "0.3"]


def test_syntactic_names():
    assert is_syntactic("x") and is_syntactic("x.1") and is_syntactic(".x") and is_syntactic("x_1")
    assert not is_syntactic("my var") and not is_syntactic("2x") and not is_syntactic(".2x")
    assert not is_syntactic("_x") and not is_syntactic("TRUE")


def test_a_formula_text_is_parsed_once_and_a_spec_checked_once():
    """The parsed formula is immutable, so the same text gives the same object (a bootstrap's or a user's many
    fits of one model parse it once); a spec's check is made once, a bad one raises every time."""
    from glmmlab.engine.model.spec import ModelSpec

    text = "y ~ x + (x | g)"
    assert parse_formula(text) is parse_formula(text)
    spec = ModelSpec(text, family="poisson")
    assert spec.check() is spec.check()
    bad = ModelSpec(text, family="no-such-family")
    for _ in range(2):
        with pytest.raises(GlmmInputError):
            bad.check()
