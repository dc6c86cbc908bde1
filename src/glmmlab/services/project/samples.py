"""The four sample datasets a new project starts with, generated reproducibly (fixed seed) with numpy.

- ``school scores`` (Gaussian, 40 schools, about 1,500 students): test ``score`` and weekly ``study_hours`` within
  ``school``; study hours differ between schools too, as in the GLMM tab's own example. ``track`` (Academic, General,
  Vocational) is the column to dummy-code.
- ``clinic recovery`` (binomial, 30 clinics, about 1,300 patients): ``recovered`` (0/1) with ``age`` and
  ``severity`` (mild, moderate, severe; ordinal) within ``clinic``.
- ``regional incidents`` (Poisson, 25 regions, 900 region-months): monthly ``incidents`` with ``population_k`` and
  ``season`` within ``region``.
- ``hospital costs`` (Gamma with a log link, 20 hospitals, about 2,000 patients): positive ``cost`` with
  ``length_of_stay`` and ``procedure`` within ``hospital``.

Group columns are strings. Each outcome has a random intercept per group, so a GLMM finds real between-group
variance. Each dataset's ``operation`` records ``{"type": "sample", "description", "suggested": {...}}`` with the
model it was made for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glmmlab.services.project.catalogue import DatasetInfo, list_datasets, store_frame
from glmmlab.services.project.store import Project

SEED = 20240611
_FLAG = "samples_created"


def _groups(rng: np.random.Generator, prefix: str, n_groups: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """Group labels (one per row) and the 0-based group index of each row, group sizes uniform in [low, high]."""
    sizes = rng.integers(low, high + 1, size=n_groups)
    index = np.repeat(np.arange(n_groups), sizes)
    width = len(str(n_groups))
    labels = np.array([f"{prefix} {i + 1:0{width}d}" for i in range(n_groups)])
    return labels[index], index


def school_scores(rng: np.random.Generator) -> pd.DataFrame:
    school, g = _groups(rng, "School", 40, 15, 60)
    n = len(g)
    school_hours = rng.normal(8.0, 2.0, size=40)
    hours = np.clip(school_hours[g] + rng.normal(0.0, 3.0, size=n), 0.0, None).round(1)
    track = rng.choice(["Academic", "General", "Vocational"], size=n, p=[0.4, 0.35, 0.25])
    track_effect = pd.Series(track).map({"Academic": 4.0, "General": 0.0, "Vocational": -3.0}).to_numpy()
    u = rng.normal(0.0, 6.0, size=40)
    score = 52.0 + 1.8 * hours + track_effect + u[g] + rng.normal(0.0, 8.0, size=n)
    return pd.DataFrame({"school": school, "student": np.arange(1, n + 1), "study_hours": hours,
                         "track": track, "score": np.clip(score, 0.0, 100.0).round(1)})


def clinic_recovery(rng: np.random.Generator) -> pd.DataFrame:
    clinic, g = _groups(rng, "Clinic", 30, 20, 70)
    n = len(g)
    age = rng.integers(18, 91, size=n)
    severity = rng.choice(["mild", "moderate", "severe"], size=n, p=[0.5, 0.3, 0.2])
    sev_effect = pd.Series(severity).map({"mild": 0.0, "moderate": -0.7, "severe": -1.5}).to_numpy()
    u = rng.normal(0.0, 0.8, size=30)
    eta = 0.9 - 0.03 * (age - 50) + sev_effect + u[g]
    recovered = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame({"clinic": clinic, "age": age.astype(np.int64), "severity": severity,
                         "recovered": recovered})


def regional_incidents(rng: np.random.Generator) -> pd.DataFrame:
    n_regions, years = 25, (2021, 2022, 2023)
    names = np.array([f"Region {chr(ord('A') + i)}" for i in range(n_regions)])
    population = rng.uniform(20.0, 250.0, size=n_regions).round(1)
    u = rng.normal(0.0, 0.4, size=n_regions)
    rows = [(r, y, m) for r in range(n_regions) for y in years for m in range(1, 13)]
    r, year, month = (np.array(x) for x in zip(*rows))
    season = np.array(["Winter", "Winter", "Spring", "Spring", "Spring", "Summer", "Summer", "Summer",
                       "Autumn", "Autumn", "Autumn", "Winter"])[month - 1]
    season_effect = pd.Series(season).map({"Winter": 0.3, "Spring": 0.0, "Summer": -0.2, "Autumn": 0.1}).to_numpy()
    mu = np.exp(0.6 + 0.006 * population[r] + season_effect + u[r])
    return pd.DataFrame({"region": names[r], "year": year.astype(np.int64), "month": month.astype(np.int64),
                         "season": season, "population_k": population[r],
                         "incidents": rng.poisson(mu).astype(np.int64)})


def hospital_costs(rng: np.random.Generator) -> pd.DataFrame:
    hospital, g = _groups(rng, "Hospital", 20, 50, 150)
    n = len(g)
    stay = np.clip(rng.poisson(4.0, size=n) + 1, 1, 30).astype(np.int64)
    procedure = rng.choice(["Medication", "Surgery", "Therapy"], size=n, p=[0.45, 0.3, 0.25])
    proc_effect = pd.Series(procedure).map({"Medication": 0.0, "Surgery": 0.9, "Therapy": 0.3}).to_numpy()
    u = rng.normal(0.0, 0.3, size=20)
    mu = np.exp(7.4 + 0.08 * stay + proc_effect + u[g])
    shape = 4.0
    cost = rng.gamma(shape, mu / shape)
    return pd.DataFrame({"hospital": hospital, "length_of_stay": stay, "procedure": procedure,
                         "cost": cost.round(2)})


_SAMPLES = [
    ("school scores", school_scores, {},
     "Students' test scores and weekly study hours within 40 schools (the GLMM tab's example).",
     {"family": "gaussian", "link": "identity", "response": "score", "fixed": ["study_hours"], "group": "school"}),
    ("clinic recovery", clinic_recovery, {"severity": "ordinal"},
     "Whether patients recovered (0/1), with age and severity, within 30 clinics.",
     {"family": "binomial", "link": "logit", "response": "recovered", "fixed": ["age"], "group": "clinic"}),
    ("regional incidents", regional_incidents, {"year": "interval", "month": "ordinal"},
     "Monthly incident counts with population (thousands) and season, within 25 regions.",
     {"family": "poisson", "link": "log", "response": "incidents", "fixed": ["population_k"], "group": "region"}),
    ("hospital costs", hospital_costs, {},
     "Treatment costs with length of stay and procedure, within 20 hospitals.",
     {"family": "gamma", "link": "log", "response": "cost", "fixed": ["length_of_stay"], "group": "hospital"}),
]


def sample_frames(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """The sample datasets as DataFrames by name (the same numbers every time for the same seed)."""
    rng = np.random.default_rng(seed)
    return {name: make(rng) for name, make, *_ in _SAMPLES}


def create_sample_datasets(project: Project) -> list[DatasetInfo]:
    """Add the sample datasets to a new project and return their entries.

    Does nothing (returns ``[]``) when the project already holds datasets or once had its samples created,
    so calling it on every start is safe. All four are added in one transaction.
    """
    with project.write():
        if project.get_meta(_FLAG) or list_datasets(project):
            return []
        frames = sample_frames()
        created = []
        for name, _, scales, description, suggested in _SAMPLES:
            created.append(store_frame(project, frames[name], name, scales=scales,
                                       operation={"type": "sample", "description": description,
                                                  "suggested": suggested}))
        project.set_meta(_FLAG, True)
        return created
