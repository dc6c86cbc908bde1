"""The one table of data file suffixes: which format a file name's ending means, for the importer, the command
line and the web upload alike.

``.txt`` is tab-separated text: the "Text (Tab delimited)" files that Excel, SPSS and Stata save under that ending.
Comma-separated text is ``.csv``. A file with another ending needs its format named (``format=csv|tsv|parquet``).
"""

from __future__ import annotations

from pathlib import PurePath

FORMATS = ("csv", "tsv", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet"}
KNOWN = ".csv, .tsv (.tab, .txt) or .parquet (.pq)"


def format_of_name(name: str | None) -> str | None:
    """The format a file name's suffix means (case does not matter), or None for an unknown or missing suffix."""
    if not name:
        return None
    return SUFFIXES.get(PurePath(name).suffix.lower())
