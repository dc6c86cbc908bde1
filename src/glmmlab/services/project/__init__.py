"""A project's data: its DuckDB store (``store``, one writer) and its datasets, one job per module: ``catalogue``
(entries, reading rows and frames, storing a DataFrame), ``column_types`` (types and scales, the text rules),
``importing`` (CSV, TSV, Parquet), ``editing`` (types and their undo, scales, names), ``lineage`` (dependents,
deletion); ``dummy`` coding, the ``samples``, file ``formats``. Exporting and importing a whole project is
``services.workbench.project_io``."""
