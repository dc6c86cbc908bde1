"""The solvers: the fixed-effects design's scaling, the blocked Cholesky factor of the random-effects system, row
blocks run in threads, the GLM start, REML, PIRLS and the Laplace approximation, quadrature, the optimiser, and
the driver that fits a model frame (:func:`glmmlab.engine.solvers.fit.fit_frame`)."""
