"""Families and links: densities, deviances, variance functions and their derivatives; the per-row state the
solvers use; the response's likelihood constants."""

# the ordinal family registers itself in distributions.FAMILIES (a module of its own: its import of Family would
# make a circle with distributions)
from glmmlab.engine.families import ordinal as _ordinal  # noqa: E402, F401
