"""Modelling on data: the model frame from a table, the one way to a fit (:mod:`.fitting`), the fitted model
every front door returns (:mod:`.fitted`), prediction, marginal means, comparison, R², bootstrap and profiling."""
