"""Families and links: densities, deviances, variance functions and their derivatives; the per-row state the
solvers use; the response's likelihood constants. Every family by name: :mod:`glmmlab.engine.families.catalogue`."""
