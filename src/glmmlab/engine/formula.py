"""lme4's model language, parsed: ``response ~ fixed part + (lhs | group) + ...`` (pure, no data).

The parser reads a formula string into a small expression tree (:class:`Name`, :class:`Num`, :class:`Call`,
:class:`BinOp`, :class:`Unary`, :class:`Paren`) with R's operator precedence, then expands the right-hand side as
R's ``terms()`` does:

- ``+`` joins terms, ``-`` removes them, ``a*b`` is ``a + b + a:b``, ``a:b`` is an interaction, ``a/b`` is
  ``a + a:b``, ``(a + b)^2`` is every product up to degree 2; ``1``/``0``/``- 1``/``+ 0`` set the intercept;
- terms are ordered by degree (main effects, then two-way interactions, ...), keeping the formula's order within a
  degree, and an interaction's label joins its variables in the order they first appear in the formula
  (``standLRT:sex``), as R does;
- ``offset(expr)`` is an offset, not a term;
- a parenthesised ``(lhs | g)`` is a correlated random term, ``(lhs || g)`` is lme4's split into ``(1 | g)`` plus
  one ``(0 + x | g)`` per term of ``lhs``; ``(lhs | a/b)`` is ``(lhs | a) + (lhs | b:a)``; ``(lhs | a:b)``
  groups by the interaction of ``a`` and ``b``.

Labels are R's deparsed text: ``I(age^2)``, ``log(expected)``, ``cbind(incidence, size - incidence)``; names that
R would not accept unquoted keep their backquotes (```my var```). Evaluating the expressions on data is the
services' job (``glmmlab.services.modelframe``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal

from glmmlab.engine.errors import GlmmInputError

# Functions a formula may call, with their number of arguments (min, max). ``offset`` and ``cbind`` are only
# valid in their places (the fixed part and the response); ``I`` evaluates arithmetic.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "I": (1, 1),
    "log": (1, 2),
    "log2": (1, 1),
    "log10": (1, 1),
    "log1p": (1, 1),
    "exp": (1, 1),
    "sqrt": (1, 1),
    "abs": (1, 1),
    "scale": (1, 1),
    "factor": (1, 1),
    "as.factor": (1, 1),
    "offset": (1, 1),
    "cbind": (2, 2),
}
_FACTOR_FUNCTIONS = ("factor", "as.factor")
# R users write relevel(f, "b") in data preparation; here the reference level is an option of the fit
_RELEVEL_HINT = ("; relevel() is not part of the formula here: write the factor (f) and give its reference level "
                 "with reference_levels={'f': 'b'} in Python, --reference f=b on the command line, or the "
                 "Model section's Reference level in the workbench")


# --------------------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Expr:
    def deparse(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def names(self) -> list[str]:
        """Column names used, in order of first appearance."""
        out: list[str] = []
        _collect_names(self, out)
        return out


@dataclass(frozen=True)
class Name(Expr):
    name: str

    def deparse(self) -> str:
        return self.name if is_syntactic(self.name) else f"`{self.name}`"


@dataclass(frozen=True)
class Num(Expr):
    value: float

    def deparse(self) -> str:
        return format_number(self.value)


@dataclass(frozen=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]

    def deparse(self) -> str:
        return f"{self.fn}({', '.join(a.deparse() for a in self.args)})"


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr

    def deparse(self) -> str:
        # R's deparse: spaces around + - * | || ~, none around / ^ :
        sep = self.op if self.op in ("/", "^", ":") else f" {self.op} "
        return f"{self.left.deparse()}{sep}{self.right.deparse()}"


@dataclass(frozen=True)
class Unary(Expr):
    op: str
    operand: Expr

    def deparse(self) -> str:
        return f"{self.op}{self.operand.deparse()}"


@dataclass(frozen=True)
class Paren(Expr):
    inner: Expr

    def deparse(self) -> str:
        return f"({self.inner.deparse()})"


def _collect_names(e: Expr, out: list[str]) -> None:
    if isinstance(e, Name):
        if e.name not in out:
            out.append(e.name)
    elif isinstance(e, Call):
        for a in e.args:
            _collect_names(a, out)
    elif isinstance(e, BinOp):
        _collect_names(e.left, out)
        _collect_names(e.right, out)
    elif isinstance(e, Unary):
        _collect_names(e.operand, out)
    elif isinstance(e, Paren):
        _collect_names(e.inner, out)


_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*|\.")
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE", "NULL",
             "Inf", "NaN", "NA", "in"}


def is_syntactic(name: str) -> bool:
    """Whether R accepts ``name`` without backquotes (and so prints it without them)."""
    return bool(_SYNTACTIC.fullmatch(name)) and name not in _RESERVED


def format_number(v: float) -> str:
    """A number as R prints it with 15 significant digits: ``2``, ``0.5``, ``1e+05``, ``1e-04``."""
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if v == 0:
        return "0"
    d = Decimal(f"{v:.15g}").normalize()
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)  # v is finite, so the exponent is a number (not 'n', 'N' or 'F')
    mant = "".join(map(str, digits))
    e10 = exp + len(mant) - 1  # exponent of the leading digit
    sci_m = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
    sci = f"{sci_m}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    fixed = format(d, "f")
    if fixed.startswith("-"):
        fixed = fixed[1:]
    pre = "-" if sign else ""
    return pre + (fixed if len(fixed) <= len(sci) else sci)


# ---------------------------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    | (?P<bq>`[^`]*`)
    | (?P<name>(?:[A-Za-z_]|\.(?![0-9]))[A-Za-z0-9._]*)
    | (?P<op>\|\||%in%|\*\*|[~+\-*/^:|(),])
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str  # num, name, op, end
    text: str
    pos: int


def _tokenize(s: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if m is None or m.end() == pos:  # only trailing blanks left
            break
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None  # a match of nonzero length went through one of the named alternatives
        text = m.group(kind)
        start = m.start(kind)
        if kind == "bad":
            hint = ""
            if text in "=<>!&":
                hint = " (comparisons and logic are not supported; add such a column to the data)"
            elif text in "\"'":
                hint = " (quote a column name with backquotes: `my column`)"
                if re.search(r"\brelevel\s*\(", s):
                    hint = _RELEVEL_HINT
            raise GlmmInputError(f"cannot read {text!r} at position {start + 1} of formula {s!r}{hint}")
        if kind == "bq":
            if len(text) == 2:
                raise GlmmInputError(f"empty backquoted name at position {start + 1} of formula {s!r}")
            toks.append(_Tok("name", text[1:-1], start))
        elif kind == "op" and text == "**":
            toks.append(_Tok("op", "^", start))
        else:
            toks.append(_Tok(kind, text, start))
    toks.append(_Tok("end", "", len(s)))
    return toks


# ------------------------------------------------------------------------------------------------- parser

# R's precedence, low to high: ~ | (||) + - (binary) * / %in% : unary -/+ ^
_BINARY = {"~": (1, "left"), "|": (2, "left"), "||": (2, "left"), "+": (4, "left"), "-": (4, "left"),
           "*": (5, "left"), "/": (5, "left"), "%in%": (6, "left"), ":": (7, "left"), "^": (9, "right")}
_UNARY_BP = 8


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, tok: _Tok, what: str) -> GlmmInputError:
        where = f"at position {tok.pos + 1}" if tok.kind != "end" else "at the end"
        return GlmmInputError(f"cannot read formula {self.text!r}: {what} {where}")

    def expect(self, text: str) -> None:
        t = self.next()
        if t.text != text or t.kind != "op":
            raise self.error(t, f"expected {text!r} but found {t.text or 'nothing'!r}")

    def parse(self) -> Expr:
        e = self.expr(0)
        t = self.peek()
        if t.kind != "end":
            raise self.error(t, f"unexpected {t.text!r}")
        return e

    def expr(self, min_bp: int) -> Expr:
        left = self.prefix()
        while True:
            t = self.peek()
            if t.kind != "op" or t.text not in _BINARY:
                break
            bp, assoc = _BINARY[t.text]
            if bp < min_bp:
                break
            self.next()
            right = self.expr(bp + 1 if assoc == "left" else bp)
            left = BinOp(t.text, left, right)
        return left

    def prefix(self) -> Expr:
        t = self.next()
        if t.kind == "num":
            txt = t.text[:-1] if t.text.endswith("L") else t.text
            return Num(float(txt))
        if t.kind == "name":
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call(t)
            return Name(t.text)
        if t.kind == "op" and t.text == "(":
            inner = self.expr(0)
            self.expect(")")
            return Paren(inner)
        if t.kind == "op" and t.text in ("-", "+"):
            return Unary(t.text, self.expr(_UNARY_BP))
        if t.kind == "end":
            raise self.error(t, "the formula ends too early")
        raise self.error(t, f"unexpected {t.text!r}")

    def call(self, name_tok: _Tok) -> Expr:
        fn = name_tok.text
        self.expect("(")
        args: list[Expr] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            while True:
                args.append(self.expr(0))
                if self.peek().kind == "op" and self.peek().text == ",":
                    self.next()
                    continue
                break
        self.expect(")")
        if fn not in FUNCTIONS:
            raise GlmmInputError(
                f"unknown function {fn}() in formula {self.text!r}: use one of "
                f"{', '.join(f + '()' for f in FUNCTIONS)}, or add the transformed column to the data"
                + (_RELEVEL_HINT if fn == "relevel" else "")
            )
        lo, hi = FUNCTIONS[fn]
        if not lo <= len(args) <= hi:
            n = f"{lo}" if lo == hi else f"{lo} or {hi}"
            raise GlmmInputError(
                f"{fn}() takes {n} argument{'s' if hi > 1 else ''}, got {len(args)} in formula {self.text!r}"
            )
        return Call(fn, tuple(args))


def parse_expression(text: str) -> Expr:
    """Parse one expression (no ``~``)."""
    return _Parser(text).parse()


# --------------------------------------------------------------------------------------- formula structure


@dataclass(frozen=True)
class Term:
    """One model term: a product of variables (an empty tuple never occurs; the intercept is a flag)."""

    variables: tuple[Expr, ...]  # in the order they first appear in the (sub-)formula

    @property
    def label(self) -> str:
        return ":".join(v.deparse() for v in self.variables)

    @property
    def degree(self) -> int:
        return len(self.variables)


@dataclass(frozen=True)
class ModelPart:
    """A one-sided formula after expansion: R's term list (ordered by degree), the intercept and offsets."""

    terms: tuple[Term, ...]
    intercept: bool
    offsets: tuple[Expr, ...] = ()

    @property
    def variables(self) -> list[Expr]:
        out: list[Expr] = []
        for t in self.terms:
            for v in t.variables:
                if v not in out:
                    out.append(v)
        return out

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.terms]


@dataclass(frozen=True)
class RandomPart:
    """One random-effects term after lme4's expansion: ``(lhs | group)``."""

    lhs: ModelPart
    group: tuple[Expr, ...]  # the grouping variables; more than one for an interaction factor ``b:a``
    correlated: bool = True
    written: str = ""  # the parenthesised term as written in the formula, for messages

    @property
    def component(self) -> str:
        """The grouping factor as lme4 names it: ``Subject``, ``cask:batch``."""
        return ":".join(g.deparse() for g in self.group)


@dataclass(frozen=True)
class Formula:
    text: str
    response: Expr | None
    fixed: ModelPart
    random: tuple[RandomPart, ...] = field(default_factory=tuple)

    @property
    def response_label(self) -> str:
        return self.response.deparse() if self.response is not None else ""

    def columns(self) -> list[str]:
        """Every column name the formula uses, in order of first appearance."""
        out: list[str] = []

        def add(e: Expr) -> None:
            for n in e.names():
                if n not in out:
                    out.append(n)

        if self.response is not None:
            add(self.response)
        for v in self.fixed.variables:
            add(v)
        for o in self.fixed.offsets:
            add(o)
        for r in self.random:
            for v in r.lhs.variables:
                add(v)
            for o in r.lhs.offsets:
                add(o)
            for g in r.group:
                add(g)
        return out


def _strip(e: Expr) -> Expr:
    while isinstance(e, Paren):
        e = e.inner
    return e


class _Expander:
    """R's terms() for one one-sided formula: terms are frozensets of variable indices."""

    def __init__(self, text: str, allow_random: bool):
        self.text = text
        self.allow_random = allow_random
        self.vars: list[Expr] = []
        self.random: list[tuple[Expr, Expr, bool, str]] = []  # (lhs, group, correlated, written)
        self.offsets: list[Expr] = []

    def var(self, e: Expr) -> int:
        if e not in self.vars:
            self.vars.append(e)
        return self.vars.index(e)

    def expand(self, e: Expr) -> tuple[list[frozenset[int]], bool | None]:
        """(terms in order, intercept: True/False if set by this expression, else None)."""
        if isinstance(e, Paren):
            inner = _strip(e)
            if isinstance(inner, BinOp) and inner.op in ("|", "||"):
                if not self.allow_random:
                    raise GlmmInputError(
                        f"random term {e.deparse()} cannot sit inside another term in formula {self.text!r}"
                    )
                self.random.append((inner.left, inner.right, inner.op == "|", e.deparse()))
                return [], None
            return self.expand(inner)
        if isinstance(e, Num):
            if e.value == 1:
                return [], True
            if e.value == 0:
                return [], False
            raise GlmmInputError(
                f"the number {e.deparse()} cannot be a term in formula {self.text!r}: "
                "write 1 or 0 for the intercept, or I(...) for arithmetic"
            )
        if isinstance(e, Unary):
            if e.op == "+":
                return self.expand(e.operand)
            terms, icpt = self.expand(e.operand)
            if terms:
                raise GlmmInputError(
                    f"cannot remove {e.operand.deparse()} from nothing in formula {self.text!r}; "
                    "just leave the term out"
                )
            return [], (None if icpt is None else not icpt)
        if isinstance(e, BinOp):
            op = e.op
            if op in ("|", "||"):
                raise GlmmInputError(
                    f"put the random term in parentheses: ({e.deparse()}) in formula {self.text!r}"
                )
            if op == "~":
                raise GlmmInputError(f"formula {self.text!r} has more than one '~'")
            if op == "+":
                lt, li = self.expand(e.left)
                rt, ri = self.expand(e.right)
                return _union(lt, rt), (ri if ri is not None else li)
            if op == "-":
                lt, li = self.expand(e.left)
                if isinstance(rhs := _strip(e.right), BinOp) and rhs.op in ("|", "||"):
                    raise GlmmInputError(f"cannot remove a random term in formula {self.text!r}")
                rt, ri = self.expand(e.right)
                icpt = li
                if ri is not None:
                    icpt = not ri
                return [t for t in lt if t not in rt], icpt
            if op in ("*", ":", "/", "^", "%in%"):
                if op == "%in%":
                    raise GlmmInputError(f"%in% is not supported in formula {self.text!r}; use a:b")
                if op == "^":
                    k = _strip(e.right)
                    if not isinstance(k, Num) or k.value != int(k.value) or k.value < 1:
                        raise GlmmInputError(
                            f"in {e.deparse()} the power must be a whole number >= 1 (outside I(), ^ crosses "
                            f"terms; write I({e.deparse()}) for arithmetic) in formula {self.text!r}"
                        )
                    base, _ = self.expand(e.left)
                    out = list(base)
                    for _ in range(int(k.value) - 1):
                        out = _union(out, [a | b for a in out for b in base])
                    return out, None
                lt, _ = self.expand(e.left)
                rt, _ = self.expand(e.right)
                if not lt or not rt:
                    raise GlmmInputError(
                        f"cannot read {e.deparse()} in formula {self.text!r}: both sides of '{op}' must be "
                        "variables"
                    )
                prods = [a | b for a in lt for b in rt]
                if op == ":":
                    return _union([], prods), None
                if op == "*":
                    return _union(_union(lt, rt), prods), None
                # a/b = a + (all of a):b
                whole = frozenset().union(*lt)
                return _union(lt, [whole | b for b in rt]), None
            raise GlmmInputError(f"cannot read operator {op!r} in formula {self.text!r}")
        if isinstance(e, Call):
            if e.fn == "offset":
                self.offsets.append(e.args[0])
                return [], None
            if e.fn == "cbind":
                raise GlmmInputError(
                    f"cbind() belongs on the left of '~' (the binomial response) in formula {self.text!r}"
                )
            _check_arith(e, self.text)
            return [frozenset([self.var(e)])], None
        if isinstance(e, Name):
            return [frozenset([self.var(e)])], None
        raise GlmmInputError(f"cannot read {e.deparse()} in formula {self.text!r}")  # pragma: no cover

    def part(self, e: Expr | None, default_intercept: bool = True) -> ModelPart:
        if e is None:
            return ModelPart((), default_intercept, ())
        terms, icpt = self.expand(e)
        intercept = default_intercept if icpt is None else icpt
        terms = sorted(terms, key=len)  # stable: order of appearance within a degree
        out = tuple(Term(tuple(self.vars[i] for i in sorted(t))) for t in terms)
        return ModelPart(out, intercept, tuple(self.offsets))


def _union(a: list[frozenset[int]], b: list[frozenset[int]]) -> list[frozenset[int]]:
    out = list(a)
    for t in b:
        if t not in out:
            out.append(t)
    return out


def _group_factors(g: Expr, text: str) -> list[tuple[Expr, ...]]:
    """The grouping factors of ``(lhs | g)``: ``a`` -> [(a,)], ``a:b`` -> [(a, b)], ``a/b`` -> [(a,), (b, a)]."""
    g = _strip(g)
    if isinstance(g, BinOp) and g.op == "/":
        outer = _group_factors(g.left, text)
        inner = _group_factors(g.right, text)
        if len(inner) != 1:
            raise GlmmInputError(f"cannot read the grouping {g.deparse()} in formula {text!r}")
        # lme4: (1 | a/b) = (1 | a) + (1 | b:a); a/b/c adds (1 | c:b:a)
        last = outer[-1]
        return outer + [inner[0] + last]
    if isinstance(g, BinOp) and g.op == ":":
        return [_group_factors(g.left, text)[0] + _group_factors(g.right, text)[0]]
    if isinstance(g, (Name, Call)) and (isinstance(g, Name) or g.fn in _FACTOR_FUNCTIONS):
        return [(g,)]
    raise GlmmInputError(
        f"the grouping factor {g.deparse()!r} in formula {text!r} must be a column, a:b (interaction) or "
        "a/b (nested)"
    )


def parse_formula(text: str) -> Formula:
    """Parse an lme4 formula. Raises :class:`GlmmInputError` naming what cannot be read."""
    if not isinstance(text, str) or not text.strip():
        raise GlmmInputError(f"formula must look like 'y ~ x + (1 | g)'; got {text!r}")
    tree = _Parser(text).parse()
    if not (isinstance(tree, BinOp) and tree.op == "~"):
        raise GlmmInputError(f"formula {text!r} needs a '~' between the response and the terms, "
                             "like 'y ~ x + (1 | g)'")
    lhs, rhs = tree.left, tree.right
    if isinstance(lhs, BinOp) and lhs.op == "~" or isinstance(rhs, BinOp) and rhs.op == "~":
        raise GlmmInputError(f"formula {text!r} has more than one '~'")
    response = _check_response(lhs, text)
    ex = _Expander(text, allow_random=True)
    fixed = ex.part(rhs)
    random: list[RandomPart] = []
    for r_lhs, r_group, correlated, written in ex.random:
        groups = _group_factors(r_group, text)
        sub = _Expander(text, allow_random=False)
        part = sub.part(r_lhs)
        if part.offsets:
            raise GlmmInputError(f"offset() cannot sit inside the random term {written} in formula {text!r}")
        if not part.terms and not part.intercept:
            raise GlmmInputError(f"the random term {written} has no effects in formula {text!r}")
        for grp in groups:
            if correlated:
                random.append(RandomPart(part, grp, True, written))
            else:  # lme4's expandDoubleVerts: (1 | g) + (0 + x | g) + ...
                if part.intercept:
                    random.append(RandomPart(ModelPart((), True), grp, False, written))
                for t in part.terms:
                    random.append(RandomPart(ModelPart((t,), False), grp, False, written))
    return Formula(text, response, fixed, tuple(random))


def _check_response(lhs: Expr, text: str) -> Expr:
    e = _strip(lhs)
    if isinstance(e, Call) and e.fn == "offset":
        raise GlmmInputError(f"offset() cannot be the response in formula {text!r}")
    _check_arith(lhs, text, top=True)
    return lhs


def _check_arith(e: Expr, text: str, top: bool = False) -> None:
    """An expression to evaluate: arithmetic on columns and numbers and the known functions."""
    if isinstance(e, (Name, Num)):
        return
    if isinstance(e, Paren):
        if isinstance(inner := _strip(e), BinOp) and inner.op in ("|", "||"):
            raise GlmmInputError(f"a random term {e.deparse()} cannot be the response in formula {text!r}")
        _check_arith(e.inner, text)
        return
    if isinstance(e, Unary):
        _check_arith(e.operand, text)
        return
    if isinstance(e, BinOp):
        if e.op not in ("+", "-", "*", "/", "^"):
            raise GlmmInputError(f"cannot evaluate {e.deparse()!r} in formula {text!r}: '{e.op}' is not arithmetic")
        _check_arith(e.left, text)
        _check_arith(e.right, text)
        return
    if isinstance(e, Call):
        if e.fn == "cbind" and not top:
            raise GlmmInputError(f"cbind() must be the whole response in formula {text!r}")
        if e.fn == "offset":
            raise GlmmInputError(f"offset() cannot sit inside {e.deparse()!r} in formula {text!r}")
        for a in e.args:
            _check_arith(a, text)
        return
