"""Big crossed models in memory: simulated data of the shapes crossed models matter most at.

- ``elp_crossed``: a crossed Bernoulli model ``acc ~ x + (1 | subject) + (1 | item)`` of the English Lexicon
  Project's accuracy data's shape (2.7M trials, 814 subjects x 80,962 words); lme4 is not run on it (glmer would
  take hours) but on ``elp_crossed_sub10``, a 10 % subsample of the same rows (same subjects, ~80 % of the
  items), beside glmmlab on the same subsample.
- ``movielens_crossed``: a crossed linear model ``rating ~ 1 + (1 | user) + (1 | movie)`` of MovieLens 1M's shape
  (1M ratings, 6,040 users x 3,706 movies, ratings 1-5), lmer beside it.

Activity and popularity are skewed as in the real data (log-normal rates: a few subjects, items, users and movies
have many rows, most have few), every level has at least one row, rows are in random order. The data are drawn
from ``numpy.random.default_rng(seed)`` and written once to ``benchmarks/data`` (regenerated when the definition
changes), as the other simulated cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cases import DATA_DIR, GENERATOR_VERSION, Case, _is_current, _write_csv  # type: ignore[import-not-found]


@dataclass(frozen=True)
class CrossedSpec:
    """Rows of a crossed model: ``n`` rows over ``n_a`` x ``n_b`` levels drawn with log-normal rates (``skew``: the
    SD of their logs), a standard normal predictor x (none for an intercept-only model), the response from the
    family with random intercepts of SDs ``sd_a`` and ``sd_b``."""

    n: int
    n_a: int
    n_b: int
    family: str  # binomial (Bernoulli, logit) | gaussian (ratings 1-5, rounded)
    names: tuple[str, str, str]  # response, factor a, factor b
    intercept: float
    beta: float | None  # x's coefficient; None: no predictor
    sd_a: float
    sd_b: float
    sigma: float = 1.0  # the residual SD (gaussian)
    skew: float = 1.0
    subsample: float = 1.0  # the fraction of the rows kept (a subsample of the same data)
    seed: int = 0

    def meta(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, "kind": "crossed", **{k: getattr(self, k) for k in (
            "n", "n_a", "n_b", "family", "intercept", "beta", "sd_a", "sd_b", "sigma", "skew", "subsample",
            "seed")}, "names": list(self.names)}

    def _levels(self, rng: np.random.Generator, levels: int) -> np.ndarray:
        """Each level once, the other rows by skewed rates, in random order."""
        rate = rng.lognormal(0.0, self.skew, levels)
        rest = rng.choice(levels, size=self.n - levels, p=rate / rate.sum())
        out = np.concatenate([np.arange(levels), rest])
        rng.shuffle(out)
        return out

    def write(self, path: Path) -> None:
        rng = np.random.default_rng(self.seed)
        a, b = self._levels(rng, self.n_a), self._levels(rng, self.n_b)
        eta = self.intercept + rng.normal(0.0, self.sd_a, self.n_a)[a] + rng.normal(0.0, self.sd_b, self.n_b)[b]
        cols: dict[str, np.ndarray] = {}
        if self.beta is not None:
            x = rng.normal(size=self.n)
            eta = eta + self.beta * x
            cols["x"] = x
        if self.family == "binomial":
            y = (rng.random(self.n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
        else:
            y = np.clip(np.round(eta + rng.normal(0.0, self.sigma, self.n)), 1, 5).astype(np.int64)
        response, fa, fb = self.names
        cols = {response: y, **cols, fa: a + 1, fb: b + 1}
        if self.subsample < 1.0:
            keep = np.sort(rng.choice(self.n, size=int(round(self.subsample * self.n)), replace=False))
            cols = {k: v[keep] for k, v in cols.items()}
        _write_csv(path, cols, self.meta())


def _formula(spec: CrossedSpec) -> str:
    response, fa, fb = spec.names
    return f"{response} ~ {'x' if spec.beta is not None else '1'} + (1 | {fa}) + (1 | {fb})"


def crossed_case(name: str, spec: CrossedSpec, notes: list[str]) -> Case:
    path = DATA_DIR / f"{name}.csv"
    response, fa, fb = spec.names
    n = int(round(spec.subsample * spec.n))

    case = Case(name=name, family=spec.family, link="logit" if spec.family == "binomial" else "identity",
                response=response, group=fa, fixed=["x"] if spec.beta is not None else [], path=path, n=n,
                n_groups=max(spec.n_a, spec.n_b), kind="formula", notes=list(notes),
                formula=_formula(spec), n_columns=4 if spec.beta is not None else 3,
                groups={fa: spec.n_a, fb: spec.n_b})

    def build() -> None:
        if not _is_current(path, spec.meta()):
            spec.write(path)
        if spec.subsample < 1.0:  # the levels the subsample keeps
            import pandas as pd

            frame = pd.read_csv(path, usecols=[fa, fb])
            case.groups = {c: int(frame[c].nunique()) for c in (fa, fb)}
            case.n_groups = max(case.groups.values())

    case.build = build
    return case


ELP = CrossedSpec(n=2_700_000, n_a=814, n_b=80_962, family="binomial", names=("acc", "subject", "item"),
                  intercept=2.2, beta=-0.4, sd_a=0.6, sd_b=0.9, skew=0.5, seed=2701)
MOVIELENS = CrossedSpec(n=1_000_209, n_a=6_040, n_b=3_706, family="gaussian", names=("rating", "user", "movie"),
                        intercept=3.58, beta=None, sd_a=0.45, sd_b=0.55, sigma=0.9, skew=1.2, seed=1001)


def crossed_cases(quick: bool) -> list[Case]:
    """The big crossed cases (``quick``: 2,000-row versions of the same shapes, with fewer levels)."""
    out = []
    sim = "SIMULATED with skewed activity and popularity (log-normal rates)"
    for name, spec, what in (("elp_crossed", ELP, "the English Lexicon Project's accuracy data's shape"),
                             ("movielens_crossed", MOVIELENS, "MovieLens 1M's shape")):
        if quick:
            spec = CrossedSpec(**{**spec.__dict__, "n": 2_000, "n_a": min(spec.n_a, 40), "n_b": min(spec.n_b, 300)})
        suffix = "_quick" if quick else ""
        out.append(crossed_case(name + suffix, spec, [f"{sim}: {what}"]))
        if name == "elp_crossed":
            sub = CrossedSpec(**{**spec.__dict__, "subsample": 0.1})
            out.append(crossed_case(f"elp_crossed_sub10{suffix}", sub,
                                    [f"{sim}: a 10 % subsample of elp_crossed's rows, where glmer runs"]))
    return out
