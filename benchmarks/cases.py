"""The benchmark cases and the deterministic data behind them.

Every simulated data set is drawn from ``numpy.random.default_rng(seed)`` with a fixed seed and written once to
``benchmarks/data/<name>.csv``; a small ``<name>.meta.json`` beside it records the generator's parameters so a
changed definition is regenerated and an unchanged one is reused.  All fitters (glmmlab, lme4, statsmodels) read
the same CSV, so they see identical numbers.

Model for every simulated case (random intercept per group):

    eta_i = beta_0 + x_i' beta + u_g[i],   u_g ~ N(0, sigma_u^2)

with the response drawn from the family.  Rows are in random order (not sorted by group) and group sizes vary.

General cases (``kind`` ``formula``) carry an lme4 formula: a simulated binomial ``(1 + x1 | g)`` (correlated
intercept and slope), lme4's InstEval and VerbAgg with crossed factors (exported from R once; R's factor level
order is written beside the CSV and applied by every fitter), sleepstudy; ``models:*`` are the general reference
cases of ``../shared/reference/models`` (kind ``models``), checked against the lme4 fit stored there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
REFERENCE_DIR = HERE.parent.parent / "shared" / "reference"

GENERATOR_VERSION = 1


@dataclass
class Case:
    """One benchmark problem: a CSV on disk and the model to fit to it."""

    name: str
    family: str  # gaussian | binomial | poisson | gamma (lower case, as glmmlab spells it)
    link: str
    response: str
    group: str
    fixed: list[str]
    path: Path | None = None
    n: int | None = None
    n_groups: int | None = None
    kind: str = "sim"  # sim | real | reference (random intercept); formula | models (general, lme4 formula)
    notes: list[str] = field(default_factory=list)
    # fitter name -> reason it is not run for this case (by default)
    skip: dict[str, str] = field(default_factory=dict)
    # for reference cases: lme4's stored fit (results.nAGQ1 of the reference JSON)
    stored_lme4: dict | None = None
    # builds the CSV when it is missing or stale; set for generated cases
    build: object = None
    # general (formula) cases: the model in lme4's language; response/group/fixed are then informative only
    formula: str | None = None
    weights: str | None = None  # column of prior weights
    offset: str | None = None  # column added to the linear predictor
    # factor columns whose level order is R's (not sorted): column -> levels, first = reference
    levels: dict | None = None
    n_columns: int | None = None  # columns of the CSV (formula cases: the size of the data)
    groups: dict | None = None  # levels per grouping factor (formula cases)

    @property
    def data_bytes(self) -> int:
        """Size of the numeric data: n x (p + 2) x 8 bytes (p predictors, the response and the group id);
        formula cases: n x (columns of the CSV) x 8 bytes (a string column counted as 8-byte codes)."""
        if self.formula and self.n_columns:
            return int(self.n or 0) * self.n_columns * 8
        return int(self.n or 0) * (len(self.fixed) + 2) * 8

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "link": self.link,
            "response": self.response,
            "group": self.group,
            "fixed": list(self.fixed),
            "n": self.n,
            "n_groups": self.n_groups,
            "data_bytes": self.data_bytes,
            "path": str(self.path) if self.path else None,
            "notes": list(self.notes),
            "formula": self.formula,
            "weights": self.weights,
            "offset": self.offset,
            "levels": self.levels,
            "groups": self.groups,
        }


# ----------------------------------------------------------------------------------------------------------------
# writing data


def _write_csv(path: Path, columns: dict[str, np.ndarray], meta: dict) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(columns)
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False, float_format="%.10g")
    tmp.replace(path)
    _meta_path(path).write_text(json.dumps(meta, indent=1, sort_keys=True))


def _meta_path(path: Path) -> Path:
    return path.with_name(path.stem + ".meta.json")


def _is_current(path: Path, meta: dict) -> bool:
    mp = _meta_path(path)
    if not (path.exists() and mp.exists()):
        return False
    try:
        return json.loads(mp.read_text()) == json.loads(json.dumps(meta, sort_keys=True))
    except (OSError, ValueError):
        return False


def _group_ids(rng: np.random.Generator, n: int, n_groups: int) -> np.ndarray:
    """Every group used at least once, the rest assigned at random (unequal sizes), rows in random order."""
    g = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, size=n - n_groups)])
    rng.shuffle(g)
    return g


def _draw_response(rng, family: str, link: str, eta: np.ndarray, sigma: float | None) -> np.ndarray:
    if family == "poisson" and link == "log":
        return rng.poisson(np.exp(eta)).astype(np.int64)
    if family == "binomial" and link == "logit":
        return (rng.random(eta.shape[0]) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    if family == "gaussian" and link == "identity":
        return eta + rng.normal(0.0, sigma, size=eta.shape[0])
    raise ValueError(f"no simulator for {family}/{link}")


@dataclass
class SimSpec:
    """A simulated data set: predictors drawn by kind, then the response from the model."""

    n: int
    n_groups: int
    family: str
    link: str
    intercept: float
    # one (name, kind, coefficient) per predictor; kind: normal | binary:<p> | uniform | group_normal
    predictors: list[tuple[str, str, float]]
    sigma_u: float
    sigma: float | None = None  # residual SD (Gaussian only)
    seed: int = 20240521

    def meta(self) -> dict:
        return {
            "generator_version": GENERATOR_VERSION,
            "n": self.n,
            "n_groups": self.n_groups,
            "family": self.family,
            "link": self.link,
            "intercept": self.intercept,
            "predictors": [list(p) for p in self.predictors],
            "sigma_u": self.sigma_u,
            "sigma": self.sigma,
            "seed": self.seed,
        }

    def write(self, path: Path) -> None:
        rng = np.random.default_rng(self.seed)
        g = _group_ids(rng, self.n, self.n_groups)
        cols: dict[str, np.ndarray] = {}
        eta = np.full(self.n, self.intercept)
        for name, kind, coef in self.predictors:
            if kind == "normal":
                x = rng.normal(size=self.n)
            elif kind.startswith("binary:"):
                x = (rng.random(self.n) < float(kind.split(":")[1])).astype(np.int64)
            elif kind == "uniform":
                x = rng.uniform(-1.0, 1.0, size=self.n)
            elif kind == "group_normal":  # a group-level (contextual) predictor, constant within a group
                x = rng.normal(size=self.n_groups)[g]
            else:
                raise ValueError(kind)
            cols[name] = x
            eta += coef * x
        u = rng.normal(0.0, self.sigma_u, size=self.n_groups)
        eta += u[g]
        y = _draw_response(rng, self.family, self.link, eta, self.sigma)
        out = {"y": y, **cols, "g": g}
        _write_csv(path, out, self.meta())


def _sim_case(name: str, spec: SimSpec, notes: list[str] | None = None) -> Case:
    path = DATA_DIR / f"{name}.csv"

    def build() -> None:
        if not _is_current(path, spec.meta()):
            spec.write(path)

    return Case(
        name=name,
        family=spec.family,
        link=spec.link,
        response="y",
        group="g",
        fixed=[p[0] for p in spec.predictors],
        path=path,
        n=spec.n,
        n_groups=spec.n_groups,
        kind="sim",
        notes=list(notes or []),
        build=build,
    )


# ----------------------------------------------------------------------------------------------------------------
# VerbAgg (lme4's data set) or a simulated stand-in of the same shape

VERBAGG_FIXED = ["Anger", "GenderM", "btypescold", "btypeshout", "situself", "modedo"]

_VERBAGG_EXPORT_R = r"""
suppressMessages(library(lme4))
d <- VerbAgg
out <- data.frame(
  r2 = as.integer(d$r2 == "Y"),
  Anger = d$Anger,
  GenderM = as.integer(d$Gender == "M"),
  btypescold = as.integer(d$btype == "scold"),
  btypeshout = as.integer(d$btype == "shout"),
  situself = as.integer(d$situ == "self"),
  modedo = as.integer(d$mode == "do"),
  id = paste0("s", as.character(d$id))
)
args <- commandArgs(trailingOnly = TRUE)
write.csv(out, args[1], row.names = FALSE)
"""


def r_status() -> tuple[bool, str]:
    """(usable, message): whether Rscript runs and lme4 loads."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False, "Rscript not found on PATH"
    try:
        proc = subprocess.run(
            [rscript, "-e", 'suppressMessages(library(lme4)); cat(as.character(packageVersion("lme4")))'],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Rscript failed: {exc}"
    if proc.returncode != 0:
        return False, "R package lme4 is not installed (apt-get install -y r-cran-lme4)"
    return True, f"lme4 {proc.stdout.strip()}"


def _export_verbagg(path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    proc = subprocess.run(
        ["Rscript", "-e", _VERBAGG_EXPORT_R, str(tmp)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0 or not tmp.exists():
        return False
    tmp.replace(path)
    return True


def _simulate_verbagg(path: Path, n_subjects: int) -> None:
    """A binary data set shaped like VerbAgg: 24 items per subject crossing btype x situ x mode (twice)."""
    rng = np.random.default_rng(316)
    anger = np.clip(np.round(rng.normal(20.0, 4.5, size=n_subjects)), 11, 39).astype(np.int64)
    male = (rng.random(n_subjects) < 0.24).astype(np.int64)
    u = rng.normal(0.0, 1.34, size=n_subjects)
    items = [(b, s, m) for _ in range(2) for s in (0, 1) for m in (0, 1) for b in (0, 1, 2)]
    subj = np.repeat(np.arange(n_subjects), len(items))
    btype = np.tile([it[0] for it in items], n_subjects)
    situ = np.tile([it[1] for it in items], n_subjects)
    mode = np.tile([it[2] for it in items], n_subjects)
    cols = {
        "Anger": anger[subj],
        "GenderM": male[subj],
        "btypescold": (btype == 1).astype(np.int64),
        "btypeshout": (btype == 2).astype(np.int64),
        "situself": situ,
        "modedo": mode,
    }
    beta = {"Anger": 0.056, "GenderM": 0.315, "btypescold": -1.055, "btypeshout": -2.042,
            "situself": -1.028, "modedo": -0.672}
    eta = 0.548 + sum(beta[k] * cols[k] for k in beta) + u[subj]
    y = (rng.random(eta.shape[0]) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    out = {"r2": y, **cols, "id": np.array([f"s{i + 1}" for i in subj])}
    _write_csv(path, out, {"generator_version": GENERATOR_VERSION, "simulated_verbagg": n_subjects})


def verbagg_case(quick: bool, use_r: bool, r_ok: bool) -> Case:
    """lme4's VerbAgg (exported once through R) or, without R, a simulated binary set of the same shape."""
    export = DATA_DIR / "verbagg_export.csv"
    case = Case(
        name="verbagg_binary",
        family="binomial",
        link="logit",
        response="r2",
        group="id",
        fixed=list(VERBAGG_FIXED),
        kind="real",
    )

    def build() -> None:
        real = export.exists()
        if not real and use_r and r_ok:
            real = _export_verbagg(export)
        if real:
            import pandas as pd

            frame = pd.read_csv(export)
            if quick:  # the first 84 subjects (about 2,000 rows)
                keep = frame["id"].drop_duplicates().iloc[:84]
                frame = frame[frame["id"].isin(keep)]
                case.path = DATA_DIR / "verbagg_quick.csv"
                frame.to_csv(case.path, index=False)
            else:
                case.path = export
            case.notes.append("lme4::VerbAgg (r2 as 0/1), exported from R" + (", first 84 subjects" if quick else ""))
        else:
            n_subjects = 84 if quick else 316
            case.path = DATA_DIR / f"verbagg_simulated_{n_subjects}.csv"
            if not case.path.exists():
                _simulate_verbagg(case.path, n_subjects)
            why = "R/lme4 not available" if not (use_r and r_ok) else "R export failed"
            case.notes.append(f"SIMULATED stand-in for VerbAgg ({why}): same shape, not the real data")
            frame = None
        if frame is None:
            import pandas as pd

            frame = pd.read_csv(case.path)
        case.n = int(frame.shape[0])
        case.n_groups = int(frame["id"].nunique())

    case.build = build
    return case


# ----------------------------------------------------------------------------------------------------------------
# reference cases from ../shared/reference


def reference_cases() -> list[Case]:
    out: list[Case] = []
    if not REFERENCE_DIR.is_dir():
        return out
    for jpath in sorted(REFERENCE_DIR.glob("*.json")):
        csv = jpath.with_suffix(".csv")
        if not csv.exists():
            continue
        ref = json.loads(jpath.read_text())
        if not ref.get("intercept", True):
            continue
        fit = ref["results"]["nAGQ1"]
        out.append(
            Case(
                name=f"ref:{jpath.stem}",
                family=str(ref["family"]).lower(),
                link=ref["link"],
                response=ref["response"],
                group=ref["group"],
                fixed=list(ref["fixed"]),
                path=csv,
                n=int(fit["nobs"]),
                n_groups=int(fit["ngroups"]),
                kind="reference",
                stored_lme4=fit,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------------------------
# general (formula) cases: random slopes, crossed factors, factors; fitted by glmmlab.glmm and lme4/glmmTMB


SLOPE_FORMULA = "y ~ x1 + x2 + (1 + x1 | g)"


@dataclass
class SlopeSpec:
    """Binomial logit with a correlated random intercept and slope on x1 per group:

        eta_i = b0 + b1 x1_i + b2 x2_i + u0_g[i] + u1_g[i] x1_i,   (u0, u1) ~ N(0, [[s0^2, r s0 s1], [., s1^2]])
    """

    n: int
    n_groups: int
    intercept: float = -0.4
    beta: tuple[float, float] = (0.5, -0.3)
    sd: tuple[float, float] = (0.8, 0.5)
    corr: float = 0.3
    seed: int = 20240601

    def meta(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, "kind": "binomial_slope", "n": self.n,
                "n_groups": self.n_groups, "intercept": self.intercept, "beta": list(self.beta),
                "sd": list(self.sd), "corr": self.corr, "seed": self.seed}

    def write(self, path: Path) -> None:
        rng = np.random.default_rng(self.seed)
        g = _group_ids(rng, self.n, self.n_groups)
        x1 = rng.normal(size=self.n)
        x2 = rng.uniform(-1.0, 1.0, size=self.n)
        s0, s1 = self.sd
        cov = np.array([[s0 * s0, self.corr * s0 * s1], [self.corr * s0 * s1, s1 * s1]])
        u = rng.multivariate_normal(np.zeros(2), cov, size=self.n_groups)
        eta = self.intercept + self.beta[0] * x1 + self.beta[1] * x2 + u[g, 0] + u[g, 1] * x1
        y = (rng.random(self.n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
        _write_csv(path, {"y": y, "x1": x1, "x2": x2, "g": g}, self.meta())


def slope_case(name: str, spec: SlopeSpec, notes: list[str] | None = None) -> Case:
    path = DATA_DIR / f"{name}.csv"

    def build() -> None:
        if not _is_current(path, spec.meta()):
            spec.write(path)

    return Case(name=name, family="binomial", link="logit", response="y", group="g", fixed=["x1", "x2"],
                path=path, n=spec.n, n_groups=spec.n_groups, kind="formula", notes=list(notes or []),
                build=build, formula=SLOPE_FORMULA, n_columns=4, groups={"g": spec.n_groups})


# R exports a data set with its factors as strings and writes R's level order beside it
_R_EXPORT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- get(args[1])
keep <- strsplit(args[4], ",")[[1]]
d <- d[, keep]
lv <- list()
for (col in names(d)) {
  if (is.logical(d[[col]])) d[[col]] <- as.integer(d[[col]])
  if (is.factor(d[[col]])) {
    lv[[col]] <- levels(d[[col]])
    d[[col]] <- as.character(d[[col]])
  }
}
if (args[1] == "VerbAgg") d$r2 <- as.integer(d$r2 == "Y")
write.csv(d, args[2], row.names = FALSE)
writeLines(jsonlite::toJSON(lv, auto_unbox = FALSE), args[3])
"""


def _export_r_dataset(dataset: str, columns: list[str], path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    lv = path.with_name(path.stem + ".levels.json")
    proc = subprocess.run(["Rscript", "-e", _R_EXPORT, dataset, str(tmp), str(lv), ",".join(columns)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not tmp.exists() or not lv.exists():
        return False
    tmp.replace(path)
    return True


def _simulate_crossed(path: Path, kind: str) -> None:
    """Stand-ins of the real data's shape for runs without R (the figures then say SIMULATED)."""
    import pandas as pd

    if kind == "insteval":
        rng = np.random.default_rng(7342)
        n, ns, nd, ndept = 73_421, 2_972, 1_128, 14
        s = rng.integers(0, ns, n)
        d = rng.integers(0, nd, n)
        dept = (np.arange(nd) % ndept)[d]
        service = (rng.random(n) < 0.43).astype(np.int64)
        eta = 3.28 - 0.07 * service + rng.normal(0, 0.32, ns)[s] + rng.normal(0, 0.51, nd)[d] \
            + rng.normal(0, 0.08, ndept)[dept]
        y = np.clip(np.round(eta + rng.normal(0, 1.18, n)), 1, 5).astype(np.int64)
        frame = pd.DataFrame({"s": s + 1, "d": d + 1, "service": service.astype(str), "dept": dept + 1, "y": y})
    else:  # verbagg
        rng = np.random.default_rng(3160)
        nsub = 316
        anger = np.clip(np.round(rng.normal(20.0, 4.5, nsub)), 11, 39).astype(np.int64)
        gender = np.where(rng.random(nsub) < 0.24, "M", "F")
        items = [(s, m, b) for s in ("S1", "S2", "S3", "S4") for m in ("want", "do") for b in ("curse", "scold",
                                                                                               "shout")]
        sub = np.repeat(np.arange(nsub), len(items))
        it = np.tile(np.arange(len(items)), nsub)
        situ = np.array(["other" if s in ("S1", "S2") else "self" for s, _, _ in items])[it]
        mode = np.array([m for _, m, _ in items])[it]
        btype = np.array([b for _, _, b in items])[it]
        eta = (0.2 + 0.057 * anger[sub] + 0.32 * (gender[sub] == "M") - 1.06 * (btype == "scold")
               - 2.1 * (btype == "shout") - 1.05 * (situ == "self") - 0.71 * (mode == "do")
               + rng.normal(0, 1.34, nsub)[sub] + rng.normal(0, 0.45, len(items))[it])
        r2 = (rng.random(eta.shape[0]) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
        names = np.array([f"{s}{m.capitalize()}{b.capitalize()}" for s, m, b in items])
        frame = pd.DataFrame({"Anger": anger[sub], "Gender": gender[sub], "item": names[it], "id": sub + 1,
                              "btype": btype, "situ": situ, "mode": mode, "r2": r2})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


_REAL = {
    # case -> (R data set, columns kept, formula, family, link, factor columns whose R level order is kept,
    #          grouping column the quick run subsets on, groups, quick groups kept)
    "insteval_crossed": ("InstEval", ["s", "d", "service", "dept", "y"], "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
                         "gaussian", "identity", ["service"], "s", ["s", "d", "dept"], 100),
    "verbagg_crossed": ("VerbAgg", ["Anger", "Gender", "item", "id", "btype", "situ", "mode", "r2"],
                        "r2 ~ Anger + Gender + btype + situ + mode + (1 | id) + (1 | item)", "binomial", "logit",
                        ["Gender", "btype", "situ", "mode"], "id", ["id", "item"], 84),
}


def real_formula_case(name: str, quick: bool, use_r: bool, r_ok: bool) -> Case:
    """InstEval / VerbAgg exported from R once (factors as strings, R's level order kept beside the CSV)."""
    dataset, columns, formula, family, link, factor_cols, sub_col, group_cols, quick_groups = _REAL[name]
    export = DATA_DIR / f"{dataset.lower()}_factors_export.csv"  # verbagg_export.csv is verbagg_binary's
    case = Case(name=name, family=family, link=link, response=formula.split("~")[0].strip(), group=group_cols[0],
                fixed=[], kind="formula", formula=formula, n_columns=len(columns))

    def build() -> None:
        import pandas as pd

        real = export.exists()
        if not real and use_r and r_ok:
            real = _export_r_dataset(dataset, columns, export)
        if real:
            src = export
            lv = json.loads(export.with_name(export.stem + ".levels.json").read_text())
            case.levels = {c: lv[c] for c in factor_cols if c in lv}
            case.notes.append(f"lme4::{dataset}, exported from R; factors {', '.join(factor_cols)} keep R's level "
                              f"order (first = reference)")
        else:
            src = DATA_DIR / f"{dataset.lower()}_simulated.csv"
            if not src.exists():
                _simulate_crossed(src, dataset.lower())
            why = "R/lme4 not available" if not (use_r and r_ok) else "R export failed"
            case.notes.append(f"SIMULATED stand-in for {dataset} ({why}): same shape, not the real data")
        frame = pd.read_csv(src)
        if quick:
            keep = frame[sub_col].drop_duplicates().iloc[:quick_groups]
            frame = frame[frame[sub_col].isin(keep)]
            case.path = DATA_DIR / f"{name}_quick.csv"
            frame.to_csv(case.path, index=False)
            case.notes.append(f"--quick: the first {quick_groups} levels of {sub_col}")
        else:
            case.path = src
        case.n = int(frame.shape[0])
        case.groups = {c: int(frame[c].nunique()) for c in group_cols}
        case.n_groups = max(case.groups.values())

    case.build = build
    return case


def sleepstudy_case() -> Case | None:
    csv = REFERENCE_DIR / "models" / "sleepstudy_slope.csv"
    if not csv.exists():
        return None
    return Case(name="sleepstudy_slope", family="gaussian", link="identity", response="Reaction", group="Subject",
                fixed=["Days"], path=csv, n=180, n_groups=18, kind="formula",
                formula="Reaction ~ Days + (Days | Subject)", n_columns=3, groups={"Subject": 18},
                notes=["lme4::sleepstudy (../shared/reference/models/sleepstudy_slope.csv)"])


def model_reference_cases() -> list[Case]:
    """../shared/reference/models/*.json: the general reference cases (glmmlab only by default)."""
    out: list[Case] = []
    mdir = REFERENCE_DIR / "models"
    if not mdir.is_dir():
        return out
    for jpath in sorted(mdir.glob("*.json")):
        csv = jpath.with_suffix(".csv")
        if not csv.exists():
            continue
        ref = json.loads(jpath.read_text())
        fit = ref["results"]["nAGQ1"]
        groups = {k: int(v) for k, v in (fit.get("ngroups") or {}).items()}
        with open(csv) as fh:
            ncol = len(fh.readline().split(","))
        out.append(Case(
            name=f"models:{jpath.stem}", family=str(ref["family"]).lower(), link=ref["link"],
            response=ref["formula"].split("~")[0].strip(), group=next(iter(groups), ""), fixed=[], path=csv,
            n=int(fit["nobs"]), n_groups=max(groups.values()) if groups else None, kind="models",
            stored_lme4=fit, formula=ref["formula"], weights=ref.get("weights"), offset=ref.get("offset"),
            n_columns=ncol, groups=groups,
            notes=[f"stored fit: {fit.get('engine', 'lme4')}"] if fit.get("engine", "lme4") != "lme4" else []))
    return out


# ----------------------------------------------------------------------------------------------------------------
# the list


def all_cases(quick: bool, use_r: bool, r_ok: bool) -> list[Case]:
    """Every case, in the order they run.  ``quick`` shrinks the simulated ones to 2,000 rows."""

    def size(n: int, groups: int) -> tuple[int, int]:
        return (2_000, 100) if quick else (n, groups)

    n, gr = size(100_000, 2_000)
    poisson = _sim_case(
        "sim_poisson_log_big" + ("_quick" if quick else ""),
        SimSpec(n, gr, "poisson", "log", 0.3,
                [("x1", "normal", 0.25), ("x2", "uniform", -0.4), ("x3", "binary:0.4", 0.2)],
                sigma_u=0.6, seed=101),
    )
    verbagg = verbagg_case(quick, use_r, r_ok)
    n, gr = size(1_000_000, 10_000)
    binom = _sim_case(
        ("sim_binomial_logit_1m" if not quick else "sim_binomial_logit_1m_quick"),
        SimSpec(n, gr, "binomial", "logit", -0.5,
                [("x1", "normal", 0.4), ("x2", "normal", -0.3), ("x3", "normal", 0.2), ("x4", "normal", 0.1),
                 ("x5", "normal", -0.15), ("x6", "binary:0.3", 0.5), ("x7", "binary:0.5", -0.25),
                 ("x8", "binary:0.7", 0.3), ("x9", "uniform", 0.2), ("x10", "group_normal", 0.35)],
                sigma_u=0.8, seed=202),
    )
    n, gr = size(1_000_000, 10_000)
    gauss = _sim_case(
        ("sim_gaussian_1m" if not quick else "sim_gaussian_1m_quick"),
        SimSpec(n, gr, "gaussian", "identity", 10.0,
                [("x1", "normal", 1.5), ("x2", "binary:0.5", -2.0), ("x3", "group_normal", 0.8)],
                sigma_u=2.0, sigma=3.0, seed=303),
    )
    n, gr = size(200_000, 2_000)
    slope_200k = slope_case("sim_binomial_slope_200k" + ("_quick" if quick else ""), SlopeSpec(n, gr, seed=401))
    n, gr = size(1_000_000, 10_000)
    slope_1m = slope_case("sim_binomial_slope_1m" + ("_quick" if quick else ""), SlopeSpec(n, gr, seed=402))
    general = [slope_200k, slope_1m, real_formula_case("insteval_crossed", quick, use_r, r_ok),
               real_formula_case("verbagg_crossed", quick, use_r, r_ok)]
    from crossed import crossed_cases  # type: ignore[import-not-found]  # beside this module (it imports Case)

    general += crossed_cases(quick)
    sleep = sleepstudy_case()
    if sleep:
        general.append(sleep)
    import covstruct_cases  # imports this module: imported when the list is made

    return [poisson, verbagg, binom, gauss, *general, *reference_cases(), *model_reference_cases(),
            covstruct_cases.ar1_case(quick), *covstruct_cases.reference_cases()]
