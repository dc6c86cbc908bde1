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
  groups by the interaction of ``a`` and ``b``;
- glmmTMB's covariance structures ``us(lhs | g)``, ``diag(lhs | g)``, ``cs(lhs | g)``, ``ar1(0 + time | g)``,
  ``toep(0 + time | g)`` and ``ou(0 + times | g)`` are random terms with that structure
  (:mod:`glmmlab.engine.model.covstruct`), with or without parentheses around them.

Labels are R's deparsed text: ``I(age^2)``, ``log(expected)``, ``cbind(incidence, size - incidence)``; names that
R would not accept unquoted keep their backquotes (```my var```). Evaluating the expressions on data is the
services' job (``glmmlab.services.modeling.variables``).

One module on purpose: the tree, its tokenizer and parser and R's expansion are the one definition of the model
language, and every pass works on the same tree classes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.covstruct import STRUCTURES
from glmmlab.engine.model.limits import LIMITS, echo, shorten

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
    "sin": (1, 1),
    "cos": (1, 1),
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
                 "Reference level of the factor in the workbench's Factors role")


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
            raise GlmmInputError(f"cannot read {echo(text)} at position {start + 1} of formula {echo(s)}{hint}")
        if kind == "bq":
            if len(text) == 2:
                raise GlmmInputError(f"empty backquoted name at position {start + 1} of formula {echo(s)}")
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


_BALANCE_FROM = 8  # a run of more '+' operands than this is read as a balanced tree (see _balanced)


def _balanced(items: list[Expr]) -> Expr:
    """``a + b + ... + z`` as a balanced tree of '+': the same terms in the same order as the left-deep tree (the
    union of terms is associative, the last intercept setting wins either way) and the same deparsed text, but a
    depth of log2(n) instead of n, so a formula of thousands of terms walks no deeper than one of ten."""
    if len(items) == 1:
        return items[0]
    mid = len(items) // 2
    return BinOp("+", _balanced(items[:mid]), _balanced(items[mid:]))


def _too_deep(text: str) -> GlmmInputError:
    return GlmmInputError(
        f"formula {echo(text)} is nested more than {LIMITS.nesting_depth} levels deep (parentheses, function "
        f"calls, signs, '^' or operators other than '+' chained one inside another); the limit is "
        f"{LIMITS.nesting_depth} levels: write it more simply"
    )


def _check_height(tree: Expr, text: str) -> None:
    """Refuse a tree deeper than the nesting limit (walked without recursion: chains such as a - b - c - ...
    are deep though the parser read them in a loop)."""
    stack: list[tuple[Expr, int]] = [(tree, 1)]
    while stack:
        e, h = stack.pop()
        if h > LIMITS.nesting_depth:
            raise _too_deep(text)
        if isinstance(e, BinOp):
            stack.append((e.left, h + 1))
            stack.append((e.right, h + 1))
        elif isinstance(e, Unary):
            stack.append((e.operand, h + 1))
        elif isinstance(e, Paren):
            stack.append((e.inner, h + 1))
        elif isinstance(e, Call):
            stack.extend((a, h + 1) for a in e.args)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0  # nested expr() calls now running: bounded by the nesting limit (no RecursionError)
        self.calls = 0  # function calls being read: their arithmetic keeps R's left-to-right order

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, tok: _Tok, what: str) -> GlmmInputError:
        where = f"at position {tok.pos + 1}" if tok.kind != "end" else "at the end"
        return GlmmInputError(f"cannot read formula {echo(self.text)}: {what} {where}")

    def expect(self, text: str) -> None:
        t = self.next()
        if t.text != text or t.kind != "op":
            raise self.error(t, f"expected {echo(text)} but found {t.text or 'nothing'!r}")

    def parse(self) -> Expr:
        e = self.expr(0)
        t = self.peek()
        if t.kind != "end":
            raise self.error(t, f"unexpected {echo(t.text)}")
        return e

    def expr(self, min_bp: int) -> Expr:
        self.depth += 1
        if self.depth > LIMITS.nesting_depth:
            raise _too_deep(self.text)
        left = self.prefix()
        run: list[Expr] = []  # the operands of a run of '+' (read into a balanced tree when long)
        while True:
            t = self.peek()
            if t.kind != "op" or t.text not in _BINARY:
                break
            bp, assoc = _BINARY[t.text]
            if bp < min_bp:
                break
            self.next()
            right = self.expr(bp + 1 if assoc == "left" else bp)
            if t.text == "+" and self.calls == 0:
                if not run:
                    run.append(left)
                run.append(right)
                continue
            if run:
                left, run = self._fold(run), []
            left = BinOp(t.text, left, right)
        if run:
            left = self._fold(run)
        self.depth -= 1
        return left

    @staticmethod
    def _fold(run: list[Expr]) -> Expr:
        if len(run) > _BALANCE_FROM:
            return _balanced(run)
        left = run[0]
        for right in run[1:]:
            left = BinOp("+", left, right)
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
        raise self.error(t, f"unexpected {echo(t.text)}")

    def _structure(self, fn: str, args: list[Expr], bar: bool) -> Expr:
        """A covariance-structure term ``fn(lhs | g)``, checked: a known keyword around one random term."""
        written = f"{fn}({', '.join(a.deparse() for a in args)})"
        if fn not in STRUCTURES:
            raise GlmmInputError(
                f"unknown covariance structure {shorten(fn)}() in the random term {shorten(written)} of formula "
                f"{echo(self.text)}: use one of {', '.join(k + '()' for k in STRUCTURES)}, or (lhs | g) for an "
                "unstructured term")
        if len(args) != 1 or not bar:
            raise GlmmInputError(
                f"{fn}() takes one random term such as {fn}(0 + time | id), got {shorten(written)} in formula "
                f"{echo(self.text)}")
        inner = _strip(args[0])
        assert isinstance(inner, BinOp)
        if inner.op == "||":
            raise GlmmInputError(
                f"write {fn}(... | g) with one '|' in {shorten(written)} of formula {echo(self.text)}: the structure "
                "itself says how the effects are correlated (diag() for none)")
        return Call(fn, (inner,))

    def call(self, name_tok: _Tok) -> Expr:
        fn = name_tok.text
        self.expect("(")
        args: list[Expr] = []
        self.calls += 1
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            while True:
                args.append(self.expr(0))
                if self.peek().kind == "op" and self.peek().text == ",":
                    self.next()
                    continue
                break
        self.expect(")")
        self.calls -= 1
        bar = [a for a in args if isinstance(_strip(a), BinOp) and _strip(a).op in ("|", "||")]  # type: ignore
        if fn in STRUCTURES or bar:
            return self._structure(fn, args, bool(bar))
        if fn not in FUNCTIONS:
            raise GlmmInputError(
                f"unknown function {shorten(fn)}() in formula {echo(self.text)}: use one of "
                f"{', '.join(f + '()' for f in FUNCTIONS)}, or add the transformed column to the data"
                + (_RELEVEL_HINT if fn == "relevel" else "")
            )
        lo, hi = FUNCTIONS[fn]
        if not lo <= len(args) <= hi:
            n = f"{lo}" if lo == hi else f"{lo} or {hi}"
            raise GlmmInputError(
                f"{shorten(fn)}() takes {n} argument{'s' if hi > 1 else ''}, got {len(args)} in formula "
                f"{echo(self.text)}"
            )
        return Call(fn, tuple(args))


def _check_length(text: str) -> None:
    if len(text) > LIMITS.formula_chars:
        raise GlmmInputError(
            f"formula {echo(text)} is {len(text):,} characters long; the limit is {LIMITS.formula_chars:,} "
            "characters"
        )


def parse_expression(text: str) -> Expr:
    """Parse one expression (no ``~``), within the length and nesting limits."""
    _check_length(text)
    tree = _Parser(text).parse()
    _check_height(tree, text)
    return tree


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
    structure: str = ""  # the covariance structure's keyword when written (us, diag, cs, ar1, toep, ou)

    @property
    def kind(self) -> str:
        """The covariance structure: the keyword written, else ``us`` (``diag`` for a piece of ``(x || g)``)."""
        return self.structure or ("us" if self.correlated else "diag")

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
        self.index: dict[Expr, int] = {}  # position of each variable in vars
        self.random: list[tuple[Expr, Expr, bool, str, str]] = []  # (lhs, group, correlated, written, structure)
        self.offsets: list[Expr] = []

    def var(self, e: Expr) -> int:
        k = self.index.get(e)
        if k is None:
            k = self.index[e] = len(self.vars)
            self.vars.append(e)
        return k

    def expand(self, e: Expr) -> tuple[list[frozenset[int]], bool | None]:
        """(terms in order, intercept: True/False if set by this expression, else None)."""
        if isinstance(e, Paren):
            inner = _strip(e)
            if isinstance(inner, BinOp) and inner.op in ("|", "||"):
                if not self.allow_random:
                    raise GlmmInputError(
                        f"random term {shorten(e.deparse())} cannot sit inside another term in formula "
                        f"{echo(self.text)}"
                    )
                self.random.append((inner.left, inner.right, inner.op == "|", e.deparse(), ""))
                return [], None
            return self.expand(inner)
        if isinstance(e, Num):
            if e.value == 1:
                return [], True
            if e.value == 0:
                return [], False
            raise GlmmInputError(
                f"the number {shorten(e.deparse())} cannot be a term in formula {echo(self.text)}: "
                "write 1 or 0 for the intercept, or I(...) for arithmetic"
            )
        if isinstance(e, Unary):
            if e.op == "+":
                return self.expand(e.operand)
            terms, icpt = self.expand(e.operand)
            if terms:
                raise GlmmInputError(
                    f"cannot remove {shorten(e.operand.deparse())} from nothing in formula {echo(self.text)}; "
                    "just leave the term out"
                )
            return [], (None if icpt is None else not icpt)
        if isinstance(e, BinOp):
            op = e.op
            if op in ("|", "||"):
                raise GlmmInputError(
                    f"put the random term in parentheses: ({shorten(e.deparse())}) in formula {echo(self.text)}"
                )
            if op == "~":
                raise GlmmInputError(f"formula {echo(self.text)} has more than one '~'")
            if op == "+":
                lt, li = self.expand(e.left)
                rt, ri = self.expand(e.right)
                return _union(lt, rt), (ri if ri is not None else li)
            if op == "-":
                lt, li = self.expand(e.left)
                if isinstance(rhs := _strip(e.right), BinOp) and rhs.op in ("|", "||"):
                    raise GlmmInputError(f"cannot remove a random term in formula {echo(self.text)}")
                rt, ri = self.expand(e.right)
                icpt = li
                if ri is not None:
                    icpt = not ri
                return [t for t in lt if t not in rt], icpt
            if op in ("*", ":", "/", "^", "%in%"):
                if op == "%in%":
                    raise GlmmInputError(f"%in% is not supported in formula {echo(self.text)}; use a:b")
                if op == "^":
                    k = _strip(e.right)
                    if not isinstance(k, Num) or not math.isfinite(k.value) or k.value != int(k.value) \
                            or k.value < 1:
                        raise GlmmInputError(
                            f"in {shorten(e.deparse())} the power must be a whole number >= 1 (outside I(), ^ "
                            f"crosses terms; write I(...) for arithmetic) in formula {echo(self.text)}"
                        )
                    base, _ = self.expand(e.left)
                    # a power above the number of variables adds no term (R's terms() alike): O(1) in k
                    power = min(int(k.value), len(frozenset().union(*base)) if base else 1)
                    out = list(base)
                    for _ in range(power - 1):
                        grown = self._products(out, base, e)
                        if len(grown) == len(out):
                            break
                        out = _union(out, grown)
                        self._count(out, e)
                    return out, None
                lt, _ = self.expand(e.left)
                rt, _ = self.expand(e.right)
                if not lt or not rt:
                    raise GlmmInputError(
                        f"cannot read {shorten(e.deparse())} in formula {echo(self.text)}: both sides of '{op}' "
                        "must be variables"
                    )
                prods = self._products(lt, rt, e)
                if op == ":":
                    return _union([], prods), None
                if op == "*":
                    return _union(_union(lt, rt), prods), None
                # a/b = a + (all of a):b
                whole = frozenset().union(*lt)
                return _union(lt, [whole | b for b in rt]), None
            raise GlmmInputError(f"cannot read operator {op!r} in formula {echo(self.text)}")
        if isinstance(e, Call):
            if e.fn in STRUCTURES:
                if not self.allow_random:
                    raise GlmmInputError(
                        f"random term {shorten(e.deparse())} cannot sit inside another term in formula "
                        f"{echo(self.text)}"
                    )
                term = e.args[0]
                assert isinstance(term, BinOp)
                self.random.append((term.left, term.right, True, e.deparse(), e.fn))
                return [], None
            if e.fn == "offset":
                self.offsets.append(e.args[0])
                return [], None
            if e.fn == "cbind":
                raise GlmmInputError(
                    f"cbind() belongs on the left of '~' (the binomial response) in formula {echo(self.text)}"
                )
            _check_arith(e, self.text)
            return [frozenset([self.var(e)])], None
        if isinstance(e, Name):
            return [frozenset([self.var(e)])], None
        raise GlmmInputError(f"cannot read {shorten(e.deparse())} in formula {echo(self.text)}")  # pragma: no cover

    def _count(self, terms: list[frozenset[int]], e: Expr) -> None:
        if len(terms) > LIMITS.fixed_terms:
            raise GlmmInputError(
                f"{shorten(e.deparse())} expands into more than {LIMITS.fixed_terms:,} terms in formula "
                f"{echo(self.text)}; the limit is {LIMITS.fixed_terms:,} terms: use fewer terms or cross fewer "
                "variables"
            )

    def _products(self, lt: list[frozenset[int]], rt: list[frozenset[int]], e: Expr) -> list[frozenset[int]]:
        """Every a | b (a of lt, b of rt), distinct, in order; refused as soon as there are more than the term
        limit (so an expansion too large to use is never built)."""
        seen: dict[frozenset[int], None] = {}
        for a in lt:
            for b in rt:
                seen[a | b] = None
            if len(seen) > LIMITS.fixed_terms:
                self._count(list(seen), e)
        self._count(list(seen), e)
        return list(seen)

    def part(self, e: Expr | None, default_intercept: bool = True) -> ModelPart:
        if e is None:
            return ModelPart((), default_intercept, ())
        terms, icpt = self.expand(e)
        self._count(terms, e)
        intercept = default_intercept if icpt is None else icpt
        terms = sorted(terms, key=len)  # stable: order of appearance within a degree
        out = tuple(Term(tuple(self.vars[i] for i in sorted(t))) for t in terms)
        return ModelPart(out, intercept, tuple(self.offsets))


def _union(a: list[frozenset[int]], b: list[frozenset[int]]) -> list[frozenset[int]]:
    return list(dict.fromkeys([*a, *b]))


def _group_factors(g: Expr, text: str) -> list[tuple[Expr, ...]]:
    """The grouping factors of ``(lhs | g)``: ``a`` -> [(a,)], ``a:b`` -> [(a, b)], ``a/b`` -> [(a,), (b, a)]."""
    g = _strip(g)
    if isinstance(g, BinOp) and g.op == "/":
        outer = _group_factors(g.left, text)
        inner = _group_factors(g.right, text)
        if len(inner) != 1:
            raise GlmmInputError(f"cannot read the grouping {shorten(g.deparse())} in formula {echo(text)}")
        # lme4: (1 | a/b) = (1 | a) + (1 | b:a); a/b/c adds (1 | c:b:a)
        last = outer[-1]
        return outer + [inner[0] + last]
    if isinstance(g, BinOp) and g.op == ":":
        return [_group_factors(g.left, text)[0] + _group_factors(g.right, text)[0]]
    if isinstance(g, (Name, Call)) and (isinstance(g, Name) or g.fn in _FACTOR_FUNCTIONS):
        return [(g,)]
    raise GlmmInputError(
        f"the grouping factor {echo(g.deparse())} in formula {echo(text)} must be a column, a:b (interaction) or "
        "a/b (nested)"
    )


def parse_formula(text: "str | Formula") -> Formula:
    """Parse an lme4 formula. Raises :class:`GlmmInputError` naming what cannot be read. A formula already
    parsed is returned as it is: the model specification parses its formula once
    (:attr:`glmmlab.engine.model.spec.ModelSpec.parsed`) and hands the parsed object on. A text parsed before
    gives the same (immutable) object again: a bootstrap's or a user's many fits of one model parse it once."""
    if isinstance(text, Formula):
        return text
    if not isinstance(text, str) or not text.strip():
        raise GlmmInputError(f"formula must look like 'y ~ x + (1 | g)'; got {echo(text)}")
    return _parse_text(text)


@lru_cache(maxsize=256)
def _parse_text(text: str) -> Formula:
    tree = parse_expression(text)  # the length and nesting limits first
    if not (isinstance(tree, BinOp) and tree.op == "~"):
        raise GlmmInputError(f"formula {echo(text)} needs a '~' between the response and the terms, "
                             "like 'y ~ x + (1 | g)'")
    lhs, rhs = tree.left, tree.right
    if isinstance(lhs, BinOp) and lhs.op == "~" or isinstance(rhs, BinOp) and rhs.op == "~":
        raise GlmmInputError(f"formula {echo(text)} has more than one '~'")
    response = _check_response(lhs, text)
    ex = _Expander(text, allow_random=True)
    fixed = ex.part(rhs)
    random: list[RandomPart] = []
    for r_lhs, r_group, correlated, written, structure in ex.random:
        groups = _group_factors(r_group, text)
        sub = _Expander(text, allow_random=False)
        part = sub.part(r_lhs)
        if part.offsets:
            raise GlmmInputError(f"offset() cannot sit inside the random term {shorten(written)} in formula "
                                 f"{echo(text)}")
        if not part.terms and not part.intercept:
            raise GlmmInputError(f"the random term {shorten(written)} has no effects in formula {echo(text)}")
        for grp in groups:
            if structure:
                random.append(RandomPart(part, grp, True, written, structure))
            elif correlated:
                random.append(RandomPart(part, grp, True, written))
            else:  # lme4's expandDoubleVerts: (1 | g) + (0 + x | g) + ...
                if part.intercept:
                    random.append(RandomPart(ModelPart((), True), grp, False, written))
                for t in part.terms:
                    random.append(RandomPart(ModelPart((t,), False), grp, False, written))
        if len(random) > LIMITS.random_terms:
            raise GlmmInputError(
                f"formula {echo(text)} has more than {LIMITS.random_terms} random terms (after (x || g) and "
                f"(1 | a/b) are expanded); the limit is {LIMITS.random_terms} random terms"
            )
    return Formula(text, response, fixed, tuple(random))


def _check_response(lhs: Expr, text: str) -> Expr:
    e = _strip(lhs)
    if isinstance(e, Call) and e.fn == "offset":
        raise GlmmInputError(f"offset() cannot be the response in formula {echo(text)}")
    _check_arith(lhs, text, top=True)
    return lhs


def _check_arith(e: Expr, text: str, top: bool = False) -> None:
    """An expression to evaluate: arithmetic on columns and numbers and the known functions."""
    if isinstance(e, (Name, Num)):
        return
    if isinstance(e, Paren):
        if isinstance(inner := _strip(e), BinOp) and inner.op in ("|", "||"):
            raise GlmmInputError(f"a random term {shorten(e.deparse())} cannot be the response in formula {echo(text)}")
        _check_arith(e.inner, text)
        return
    if isinstance(e, Unary):
        _check_arith(e.operand, text)
        return
    if isinstance(e, BinOp):
        if e.op not in ("+", "-", "*", "/", "^"):
            raise GlmmInputError(f"cannot evaluate {echo(e.deparse())} in formula {echo(text)}: '{e.op}' is not "
                                 "arithmetic")
        _check_arith(e.left, text)
        _check_arith(e.right, text)
        return
    if isinstance(e, Call):
        if e.fn == "cbind" and not top:
            raise GlmmInputError(f"cbind() must be the whole response in formula {echo(text)}")
        if e.fn == "offset":
            raise GlmmInputError(f"offset() cannot sit inside {echo(e.deparse())} in formula {echo(text)}")
        for a in e.args:
            _check_arith(a, text)
        return
