"""Families and links: densities, deviances, variance functions and their derivatives; the per-row state the
solvers use; the response's likelihood constants."""
