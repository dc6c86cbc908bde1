"""Benchmark cases of covariance structures (``us``, ``diag``, ``cs``, ``ar1``, ``toep``): the covstruct cases of
../shared/reference/breadth (glmmlab against glmmTMB; lme4 has no such structures) and a simulated
longitudinal ``ar1`` model of 100,000 rows, 10,000 subjects x 10 equally spaced occasions, Gaussian:

    y_it = b0 + b1 t + b2 trt_i + u_it + e_it,   (u_i1 .. u_i10) ~ N(0, sd^2 rho^|s - t|),   e ~ N(0, sigma^2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cases import DATA_DIR, GENERATOR_VERSION, REFERENCE_DIR, Case, _is_current, _write_csv

AR1_FORMULA = "y ~ tnum + trt + ar1(0 + time | id)"
NO_LME4 = "lme4 has no covariance structures (glmmTMB's us, diag, cs, ar1, toep)"
NO_STATSMODELS = "statsmodels has no covariance structures for random effects"


@dataclass
class Ar1Spec:
    n_subjects: int
    n_times: int
    beta: tuple[float, float, float] = (10.0, 0.4, 1.0)
    sd: float = 1.2
    rho: float = 0.7
    sigma: float = 0.6
    seed: int = 20251205

    def meta(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, "kind": "gaussian_ar1", "n_subjects": self.n_subjects,
                "n_times": self.n_times, "beta": list(self.beta), "sd": self.sd, "rho": self.rho,
                "sigma": self.sigma, "seed": self.seed}

    def write(self, path: Path) -> None:
        rng = np.random.default_rng(self.seed)
        k, m = self.n_subjects, self.n_times
        ids = np.repeat(np.arange(k), m)
        t = np.tile(np.arange(1, m + 1), k)
        trt = (rng.random(k) < 0.5)[ids]
        # AR(1) effects per subject by the recursion u_t = rho u_(t-1) + sqrt(1 - rho^2) z_t (stationary)
        z = rng.standard_normal((k, m))
        u = np.empty((k, m))
        u[:, 0] = z[:, 0]
        for j in range(1, m):
            u[:, j] = self.rho * u[:, j - 1] + np.sqrt(1.0 - self.rho ** 2) * z[:, j]
        b0, b1, b2 = self.beta
        y = b0 + b1 * t + b2 * trt + self.sd * u.ravel() + self.sigma * rng.standard_normal(k * m)
        width = len(str(m))
        _write_csv(path, {"y": np.round(y, 6), "tnum": t, "time": [f"t{j:0{width}d}" for j in t],
                          "trt": np.where(trt, "trt", "ctl"), "id": [f"s{i:05d}" for i in ids]}, self.meta())


def ar1_case(quick: bool) -> Case:
    spec = Ar1Spec(200, 10) if quick else Ar1Spec(10_000, 10)
    n = spec.n_subjects * spec.n_times
    name = "sim_gaussian_ar1_100k" + ("_quick" if quick else "")
    path = DATA_DIR / f"{name}.csv"

    def build() -> None:
        if not _is_current(path, spec.meta()):
            spec.write(path)

    return Case(name=name, family="gaussian", link="identity", response="y", group="id", fixed=["tnum", "trt"],
                path=path, n=n, n_groups=spec.n_subjects, kind="formula", formula=AR1_FORMULA, n_columns=5,
                groups={"id": spec.n_subjects}, build=build,
                skip={"lme4": NO_LME4, "statsmodels": NO_STATSMODELS},
                notes=[f"{spec.n_subjects:,} subjects x {spec.n_times} occasions, AR(1) sd {spec.sd} rho {spec.rho}, "
                       f"residual sd {spec.sigma}"])


def reference_cases() -> list[Case]:
    """The covstruct cases of ../shared/reference/breadth (their glmmTMB ML fits are in the JSON; the benchmark
    fits Gaussian models by REML in both glmmlab and glmmTMB, as for every linear mixed model here)."""
    folder = REFERENCE_DIR / "breadth"
    out: list[Case] = []
    for jpath in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        ref = json.loads(jpath.read_text())
        if "covstruct" not in ref.get("needs", []) or not jpath.with_suffix(".csv").exists():
            continue
        fit = ref["results"]["ML"]
        groups = {k: int(v) for k, v in (fit.get("ngroups") or {}).items()}
        with open(jpath.with_suffix(".csv")) as fh:
            ncol = len(fh.readline().split(","))
        out.append(Case(
            name=f"breadth:{jpath.stem}", family=str(ref["family"]).lower(), link=ref["link"],
            response=ref["formula"].split("~")[0].strip(), group=next(iter(groups), ""), fixed=[],
            path=jpath.with_suffix(".csv"), n=int(fit["nobs"]), n_groups=max(groups.values()) if groups else None,
            kind="formula", formula=ref["formula"], n_columns=ncol, groups=groups,
            skip={"lme4": NO_LME4, "statsmodels": NO_STATSMODELS},
            notes=[f"glmmTMB's ML fit in R: {fit.get('seconds', float('nan')):.2f} s"]))
    return out
