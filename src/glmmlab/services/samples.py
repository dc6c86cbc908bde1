"""The four sample datasets a new project starts with, generated reproducibly (fixed seed) with numpy.

- ``school scores`` (Gaussian): students' test scores and weekly study hours within schools, with a ``track``
  column to dummy-code.
- ``clinic recovery`` (binomial): whether patients recovered, within clinics, with a ``treatment`` column.
- ``regional incidents`` (Poisson): monthly counts of incidents within regions, with a ``season`` column.
- ``hospital costs`` (Gamma): positive treatment costs within hospitals, with a ``procedure`` column.

Group columns are strings. Each has a random intercept per group, so a GLMM finds real between-group variance.
"""

from __future__ import annotations

from glmmlab.services.datasets import DatasetInfo
from glmmlab.services.store import Project

SEED = 20240611


def create_sample_datasets(project: Project) -> list[DatasetInfo]:
    """Add the sample datasets to a new project and return their entries.

    Does nothing (returns ``[]``) when the project already holds datasets or once had its samples created,
    so calling it on every start is safe.
    """
    raise NotImplementedError
