"""A project: its DuckDB store (one writer), datasets (import, edit, types, lineage), dummy coding, samples,
export and import of a whole project."""
