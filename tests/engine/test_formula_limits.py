"""Pathological formulas (issue 23): the limits of glmmlab.engine.model.limits are checked before any work, by every
front door; each refusal says which limit and its value, quotes at most a short piece of the formula, and comes
at once. No RecursionError, no hang. Python and the command line here; the web in tests/web/test_formula_limits_api.py.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import parse_formula
from glmmlab.engine.model.limits import LIMITS

GLMMLAB = [sys.executable, "-m", "glmmlab.interfaces.cli"]
NAMES = "a b c d e f h i j k l m n o p".split()
FIFTEEN = "+".join(NAMES)

# (case, formula, words of the refusal)
REFUSED = [
    ("600 nested parentheses", "y ~ " + "(" * 600 + "x" + ")" * 600 + " + (1 | g)", "nested more than 100 levels"),
    ("10,000 nested parentheses", "y ~ " + "(" * 10_000 + "x" + ")" * 10_000, "the limit is 10,000 characters"),
    ("1 MB of x + x", "y ~ " + " + ".join(["x"] * 250_000) + " + (1 | g)", "the limit is 10,000 characters"),
    ("1 MB of unknown names", "y ~ " + " + ".join(f"u{k}" for k in range(150_000)) + " + (1 | g)",
     "the limit is 10,000 characters"),
    ("1 MB backquoted name", "y ~ `" + "n" * 1_000_000 + "` + (1 | g)", "the limit is 10,000 characters"),
    ("15 names to the 15th", f"y ~ ({FIFTEEN})^15 + (1 | g)", "the limit is 1,000 terms"),
    ("15 names to the 12th", f"y ~ ({FIFTEEN})^12 + (1 | g)", "the limit is 1,000 terms"),
    ("a product of 16 names", "y ~ " + "*".join(f"v{k}" for k in range(16)) + " + (1 | g)",
     "the limit is 1,000 terms"),
    ("a sum of 1,200 names", "y ~ " + " + ".join(f"x{k}" for k in range(1_200)) + " + (1 | g)",
     "the limit is 1,000 terms"),
    ("500 random terms", "y ~ x + " + " + ".join(f"(1 | g{k})" for k in range(500)), "the limit is 50 random terms"),
    ("a chain of 300 minus signs", "y ~ " + " - ".join(f"v{k}" for k in range(300)) + " + (1 | g)",
     "nested more than 100 levels"),
    ("an infinite power", "y ~ x^1e999 + (1 | g)", "the power must be a whole number"),
]


@contextlib.contextmanager
def within(seconds: float):
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""
    def alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def small_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({name: rng.normal(size=n) for name in NAMES})
    df["x"] = rng.normal(size=n)
    df["g"] = [f"g{k % 6}" for k in range(n)]
    df["y"] = df["x"] + rng.normal(size=n) + (df["g"].str[1:].astype(int) - 3) * 0.5
    return df


def test_the_limits_are_data_in_one_place():
    assert (LIMITS.formula_chars, LIMITS.nesting_depth, LIMITS.fixed_terms, LIMITS.random_terms,
            LIMITS.echo_chars) == (10_000, 100, 1_000, 50, 120)


@pytest.mark.parametrize("case, formula, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_python_refuses_at_once_naming_the_limit(case, formula, words):
    start = time.perf_counter()
    with within(10), pytest.raises(GlmmInputError) as info:
        glmmlab.glmm(formula, small_frame())
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert words in message, message
    assert len(message) < 800, f"{case}: a message of {len(message):,} characters"


def test_a_huge_power_of_one_variable_is_that_variable_at_once():
    df = small_frame()
    with within(10):
        start = time.perf_counter()
        m = glmmlab.glmm("y ~ x^1000000000000 + (1 | g)", df)
        assert time.perf_counter() - start < 5.0
    plain = glmmlab.glmm("y ~ x + (1 | g)", df)
    assert list(m.params.index) == ["(Intercept)", "x"]
    assert np.array_equal(m.params.to_numpy(), plain.params.to_numpy())
    with within(5):
        assert parse_formula(f"y ~ ({FIFTEEN})^1000000000 + (1 | g)".replace(FIFTEEN, "a+b+c")).fixed.labels == \
            ["a", "b", "c", "a:b", "a:c", "b:c", "a:b:c"]


def test_a_long_formula_within_the_limits_reads_without_recursion():
    names = [f"x{k}" for k in range(990)]
    text = "y ~ " + " + ".join(names) + " + (1 | g)"
    assert len(text) < LIMITS.formula_chars
    f = parse_formula(text)
    assert f.fixed.labels == names and f.fixed.intercept
    assert parse_formula("y ~ " + " + ".join(names[:50]) + " - x3 + 0 + (1 | g)").fixed.labels == \
        [n for n in names[:50] if n != "x3"]
    # 90 nested parentheses are within the limit
    assert parse_formula("y ~ " + "(" * 90 + "x" + ")" * 90 + " + (1 | g)").fixed.labels == ["x"]


def test_an_unknown_long_name_is_quoted_shortly():
    name = "q" * 5_000
    with pytest.raises(GlmmInputError) as info:
        glmmlab.glmm(f"y ~ `{name}` + (1 | g)", small_frame())
    assert "is not in the data" in str(info.value) and len(str(info.value)) < 800


# ---- the command line: exit 2, one 'error:' line, at once -------------------------------------------------------

# one argument of the command line holds 128 kB at most; each run starts Python, so a few cases
CLI_CASES = [c for c in REFUSED if c[0] in ("600 nested parentheses", "15 names to the 15th", "500 random terms",
                                            "10,000 nested parentheses")]


def cli(*args, timeout=60):
    return subprocess.run(GLMMLAB + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "d.csv"
    small_frame().to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, formula, words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_command_line_fit_and_compare_refuse_with_one_line(data_file, case, formula, words):
    for args in (["fit", data_file, "--formula", formula],
                 ["compare", data_file, "--formula", "y ~ x + (1 | g)", "--formula", formula]):
        p = cli(*args)
        assert p.returncode == 2, (case, p.stderr[-500:])
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr[:500]
        assert len(lines[0]) < 800


def test_command_line_fits_a_huge_power_of_one_variable(data_file):
    p = cli("fit", data_file, "--formula", "y ~ x^1000000000000 + (1 | g)", "--format", "json", "--diagnostics",
            "none", timeout=60)
    assert p.returncode == 0, p.stderr
