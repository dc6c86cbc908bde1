"""The numerical engine: pure array code, no I/O, no printing.

- :mod:`.model`: the formula language, terms and the model frame, the model specification, options and limits.
- :mod:`.families`: distributions and links, the per-row state the solvers use.
- :mod:`.solvers`: the fit itself (:func:`glmmlab.engine.solvers.fit.fit_frame`): REML, PIRLS and the Laplace
  approximation, AGQ, starts, the optimiser, the blocked Cholesky factor, row blocks, profiles.
- :mod:`.inference`: the record of a fit (:class:`~glmmlab.engine.inference.results.GlmmResult`), Wald tables and
  the advice a fit carries.

It may import numpy and scipy only, never ``glmmlab.services`` or ``glmmlab.interfaces``. The one exception is
pandas, imported inside ``GlmmResult``'s accessors (``params``, ``conf_int``, ``ranef``, ...) when they are used.
"""
