"""Services: projects, datasets, saved models and reports, kept in one embedded DuckDB database per project."""
