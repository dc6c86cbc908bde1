"""Importing a CSV, TSV or Parquet file as a new primary dataset: :func:`import_dataset`.

A text file's header is read by glmmlab's own parser, its records are counted independently of DuckDB (an import
that reads another number of rows is refused), a malformed line is named in the message, and the types are chosen
from all rows by the rules of :mod:`~glmmlab.services.project.column_types`. Progress is reported while DuckDB reads
and stores. An import is one transaction: a file that cannot be read leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

import duckdb
import pyarrow.parquet as pq

from glmmlab.services.errors import NotFound, ServiceError, disk_full, is_disk_full
from glmmlab.services.project import formats
from glmmlab.services.project.catalogue import (
    DatasetInfo,
    _check_name,
    _load_info,
    _register_dataset,
    _unique_column_names,
    _unique_name,
)
from glmmlab.services.project.column_types import (
    _BATCH,
    _SQL_TYPES,
    _choose_types,
    _negative_columns,
    _text_convert,
    default_scale,
)
from glmmlab.services.project.store import Project, data_column, data_table, quote_literal

MAX_COLUMNS = 10_000  # an import's time and memory grow with the columns (10,000 text columns: ~40 s, ~0.6 GB)

Source = Union[str, os.PathLike, bytes, bytearray, BinaryIO]
Progress = Callable[[str, float], None]


@contextmanager
def _source_path(source: Source, fmt: str | None) -> Iterator[tuple[Path, str]]:
    """Yield a path to the source's bytes on disk and the format; bytes and file objects go to a temporary file."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise NotFound(f"There is no file at {path}; check the path.")
        yield path, _format_of(fmt, path.name)
        return
    filename = getattr(source, "name", None)
    fmt = _format_of(fmt, filename if isinstance(filename, str) else None)
    handle = tempfile.NamedTemporaryFile(prefix="glmmlab-import-", suffix="." + fmt, delete=False)
    try:
        with handle:
            if isinstance(source, (bytes, bytearray, memoryview)):
                handle.write(source)
            elif hasattr(source, "read"):
                shutil.copyfileobj(source, handle, 1 << 20)
            else:
                raise ServiceError("The data to import must be a file path, bytes or a binary file object.")
        yield Path(handle.name), fmt
    finally:
        with suppress(OSError):
            os.unlink(handle.name)


@contextmanager
def _full_disk(display: str) -> Iterator[None]:
    """Turn a full disk met while copying files (OSError) into a clear :class:`DiskFull` naming the import."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(f"'{display}' could not be imported") from None
        raise


def _format_of(fmt: str | None, filename: str | None) -> str:
    if fmt is None:
        fmt = formats.format_of_name(filename)
        if fmt is None:
            shown = f"'{Path(filename).name}'" if filename else "The data"
            raise ServiceError(f"{shown} is not a {formats.KNOWN} file; say which format it is "
                               "(csv, tsv or parquet).")
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in formats.FORMATS:
        raise ServiceError(f"'{fmt}' is not a format glmmlab reads; use csv, tsv or parquet.")
    return fmt


def _read_header(path: Path, delim: str) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if not head.strip():
        raise ServiceError(f"The file '{path.name}' is empty; it needs a header row with the column names.")
    if len(head) == 1 << 20 and b"\n" not in head and b"\r" not in head:
        raise ServiceError(f"The first line of '{path.name}' is longer than 1 MiB, so it is not a header row glmmlab "
                           f"can read (at most {MAX_COLUMNS:,} columns). Nothing was imported.")
    text = head.decode("utf-8", errors="replace")
    first_bad = head.find(b"\n")
    try:
        head[: first_bad if first_bad >= 0 else len(head)].decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ServiceError(f"Line 1 of '{path.name}' is not valid UTF-8 text; save the file as UTF-8 (CSV UTF-8) "
                           "and import it again.") from None
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar='"', doublequote=True, strict=False)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise ServiceError(f"Line 1 of '{path.name}' is not a header row ({exc}); the first line must hold the "
                           "column names.") from None
    if not header or all(not h.strip() for h in header):
        raise ServiceError(f"Line 1 of '{path.name}' is empty; the first line must hold the column names.")
    return header


_COUNT_CHUNK = 8 << 20


def _count_records(path: Path) -> int:
    """The number of non-empty records in a CSV/TSV file (header included), counted independently of DuckDB.

    A record ends at a line break (``\\n``, ``\\r`` or ``\\r\\n``) outside double quotes; quotes are RFC 4180
    (a doubled quote inside a quoted value flips the state twice, so the parity of the quotes seen so far says
    whether a byte is inside quotes). Empty lines are not records, as in DuckDB's reader for files of several
    columns (for files of one column DuckDB reads some empty lines as missing values; the caller allows for that).
    The file is read in chunks with numpy, so the count costs about as much as reading the file once.
    """
    import numpy as np

    count = 0
    in_quote = 0          # 1 when the previous chunk ended inside quotes
    prev_break = True     # the byte before this chunk (or the start of the file) was a line break outside quotes
    with open(path, "rb") as fh:
        while chunk := fh.read(_COUNT_CHUNK):
            a = np.frombuffer(chunk, dtype=np.uint8)
            quotes = np.flatnonzero(a == 34)
            breaks = np.flatnonzero((a == 10) | (a == 13))
            # a break is outside quotes when the quotes before it (and the carried state) are even in number
            breaks = breaks[(np.searchsorted(quotes, breaks) + in_quote) % 2 == 0]
            # a record starts at every byte that is not an outside break but follows one (or the start)
            if breaks.size == 0:
                count += int(prev_break)
                prev_break = False
            else:
                count += int(prev_break and breaks[0] != 0)
                count += int(np.count_nonzero(np.diff(breaks) != 1))
                last = int(breaks[-1])
                if last != a.size - 1:
                    count += 1
                prev_break = last == a.size - 1
            in_quote = (in_quote + quotes.size) % 2
    return count


def _header_end(path: Path) -> tuple[int, bool]:
    """(byte offset where the header record's text ends, whether that record spans several physical lines)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    in_quote = False
    for i, b in enumerate(head):
        if b == 34:
            in_quote = not in_quote
        elif b in (10, 13) and not in_quote:
            return i, any(c in (10, 13) for c in head[:i])
    return len(head), any(c in (10, 13) for c in head)


@contextmanager
def _plain_header(path: Path, names: list[str], delim: str) -> Iterator[Path]:
    """The file itself, or (when its header holds a quoted line break) a copy whose header is plain column ids.

    DuckDB 1.x-2.x reads a CRLF file whose quoted header name holds a bare LF as having no rows at all; the names are
    taken from our own header parser anyway, so the copy's header only needs the right number of fields.
    """
    end, multiline = _header_end(path)
    if not multiline:
        yield path
        return
    handle = tempfile.NamedTemporaryFile(prefix="glmmlab-header-", suffix=path.suffix, delete=False)
    try:
        with handle, open(path, "rb") as src:
            handle.write(delim.join(data_column(i) for i in range(len(names))).encode())
            src.seek(end)
            shutil.copyfileobj(src, handle, 1 << 20)
        yield Path(handle.name)
    finally:
        with suppress(OSError):
            os.unlink(handle.name)


def _check_width(n_columns: int, display: str) -> None:
    if n_columns > MAX_COLUMNS:
        raise ServiceError(f"'{display}' has {n_columns:,} columns; glmmlab imports at most {MAX_COLUMNS:,}. Keep the "
                           "columns the analysis needs (the response, predictors and group) and import that file. "
                           "Nothing was imported.")


def _record_to_line(path: Path, record: int, delim: str) -> int:
    """The physical line on which record number ``record`` (1-based, header included) starts."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=delim, quotechar='"', doublequote=True, strict=False)
            start = 1
            for number, _ in enumerate(reader, start=1):
                if number == record:
                    return start
                start = reader.line_num + 1
    except (OSError, csv.Error):
        pass
    return record


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")


def _csv_error(exc: Exception, path: Path, display: str, delim: str) -> ServiceError:
    if is_disk_full(exc):
        return disk_full(f"'{display}' could not be imported")
    text = str(exc)
    match = _CSV_LINE.search(text)
    if not match:
        first = text.splitlines()[0] if text else type(exc).__name__
        return ServiceError(f"'{display}' could not be read: {first.removeprefix('Invalid Input Error: ')}. "
                            "Check that it is a UTF-8 CSV/TSV file with a header row.")
    line = _record_to_line(path, int(match.group(1)), delim)
    fields = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if fields:
        want, got = fields.groups()
        reason = (f"it has {got} field{'s' if got != '1' else ''} but the header has {want}; "
                  "fix that line (a missing or extra separator, or an unquoted separator inside a value) and import "
                  "again")
    elif "unicode" in text.lower() or "utf-8" in text.lower():
        reason = "it is not valid UTF-8 text; save the file as UTF-8 (CSV UTF-8) and import it again"
    elif "unterminated quote" in text.lower():
        reason = ("a double quote is out of place (a quoted value must be closed, and followed by a separator or the "
                  "end of the line); fix the quotes on that line and import again")
    else:
        detail = [ln for ln in text.splitlines()[2:] if ln.strip()]
        reason = (detail[0].rstrip(".") if detail else "it cannot be read") + "; fix that line and import again"
    return ServiceError(f"Line {line} of '{display}' is malformed: {reason}. Nothing was imported.")


class _ProgressPoller:
    """Reports DuckDB's progress on the running query of ``cur`` as ``progress(stage, lo + share * (hi - lo))``."""

    def __init__(self, cur, progress: Progress | None, stage: str, lo: float, hi: float):
        self.cur, self.progress, self.stage, self.lo, self.hi = cur, progress, stage, lo, hi
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        if self.progress is not None:
            self.progress(self.stage, self.lo)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        progress = self.progress
        assert progress is not None  # the poller only runs for a progress callback
        last = -1.0
        while not self._stop.wait(0.1):
            try:
                pct = self.cur.query_progress()
            except Exception:  # noqa: BLE001 - progress is best effort
                return
            if pct is not None and pct >= 0 and pct / 100 > last + 0.01:
                last = min(pct / 100, 1.0)
                with suppress(Exception):
                    progress(self.stage, self.lo + last * (self.hi - self.lo))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return False


def _create_converted(cur, table: str, source: str, exprs: list[str]) -> None:
    """``CREATE TABLE table AS SELECT exprs FROM source``, built in batches of columns for wide sources.

    Each batch becomes a temporary table in the source's row order; a positional join puts them side by side.
    """
    if len(exprs) <= _BATCH:
        cur.execute(f"CREATE TABLE {table} AS SELECT {', '.join(exprs) or '1 AS _empty'} FROM {source}")
        return
    parts = []
    try:
        for b in range(0, len(exprs), _BATCH):
            part = f"_part_{table}_{b // _BATCH}"
            cur.execute(f"CREATE OR REPLACE TEMP TABLE {part} AS SELECT {', '.join(exprs[b:b + _BATCH])} FROM {source}")
            parts.append(part)
        cur.execute(f"CREATE TABLE {table} AS SELECT * FROM {' POSITIONAL JOIN '.join(parts)}")
    finally:
        for part in parts:
            with suppress(duckdb.Error):
                cur.execute(f"DROP TABLE IF EXISTS {part}")


def _duck_dtype(type_name: str) -> str | None:
    t = type_name.upper()
    if t == "BOOLEAN":
        return "boolean"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
             "HUGEINT", "UHUGEINT"):
        return "int64"
    if t in ("FLOAT", "DOUBLE", "REAL") or t.startswith("DECIMAL"):
        return "float64"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "datetime"
    if t in ("VARCHAR", "NULL") or t.startswith("ENUM"):
        return "string"
    return None


def import_dataset(project: Project, source: Source, name: str, fmt: str | None = None,
                   progress: Progress | None = None) -> DatasetInfo:
    """Import a CSV, TSV or Parquet file as a new primary dataset called ``name`` and return its entry.

    ``source`` is a path, the file's bytes, or a binary file object. ``fmt`` is ``'csv'``, ``'tsv'`` or
    ``'parquet'``; when None it comes from the file extension of a path (bytes and file objects need ``fmt``
    unless the object has a ``name`` with an extension). CSV/TSV files are UTF-8 with a header row; types are
    inferred per column from all rows (rules in :func:`_text_fits`: ``true``/``false`` in any case is boolean; whole
    numbers of up to 18 digits int64; decimals, exponents and ``inf`` float64 (so integers mixed with
    decimals are float64); ``YYYY-MM-DD`` date; ``YYYY-MM-DD HH:MM[:SS[.fff]]`` (or with ``T``) datetime; anything
    else string). Empty or blank cells and the :data:`MISSING_TOKENS` (``NA``, ``N/A``, ``NaN``, ``NULL``, ``.``,
    ``#N/A`` in any case) are missing (null) in a column of any type but string. Blank or repeated header names are
    made unique (``column_3``, ``score_2``). ``progress(stage, fraction)`` is called now and then with ``stage`` one of
    ``'reading'``, ``'checking types'``, ``'storing'``, ``'done'`` and ``fraction`` the overall share done,
    from 0.0 to 1.0.

    A malformed file raises :class:`ServiceError` naming the line, and nothing is imported. If the name is already
    taken, a number is added (``'scores (2)'``).
    """
    name = _check_name(name)
    display = name
    if isinstance(source, (str, os.PathLike)):
        display = Path(source).name
    elif isinstance(source_name := getattr(source, "name", None), str):
        display = Path(source_name).name
    with _full_disk(display), _source_path(source, fmt) as (path, fmt):
        if fmt == "parquet":
            info = _import_parquet(project, path, name, display, progress)
        else:
            info = _import_text(project, path, name, display, fmt, progress)
    if progress:
        progress("done", 1.0)
    return info


def _configure_progress(cur, on: bool) -> None:
    if on:
        cur.execute("SET enable_progress_bar = true")
        cur.execute("SET enable_progress_bar_print = false")


def _import_text(project: Project, path: Path, name: str, display: str, fmt: str,
                 progress: Progress | None) -> DatasetInfo:
    delim = "\t" if fmt == "tsv" else ","
    header = _read_header(path, delim)
    _check_width(len(header), display)
    names = _unique_column_names(header)
    n = len(names)
    columns_arg = "{" + ", ".join(f"'{data_column(i)}': 'VARCHAR'" for i in range(n)) + "}"
    relation = (f"read_csv({quote_literal(str(path))}, header = true, delim = {quote_literal(delim)}, quote = '\"', "
                f"escape = '\"', auto_detect = false, columns = {columns_arg}, strict_mode = true, "
                "null_padding = false, ignore_errors = false, encoding = 'utf-8')")
    with project.write() as cur, _full_disk(display), _plain_header(path, names, delim) as readable:
        _configure_progress(cur, progress is not None)
        relation = relation.replace(quote_literal(str(path)), quote_literal(str(readable)), 1)
        try:
            # Reading the text once into a temporary table makes the type checks and the typed copy fast.
            with _ProgressPoller(cur, progress, "reading", 0.0, 0.6):
                cur.execute(f"CREATE OR REPLACE TEMP TABLE _import_text AS SELECT * FROM {relation}")
        except duckdb.Error as exc:
            raise _csv_error(exc, path, display, delim) from None
        try:
            _check_row_count(cur, path, display, n)
            if progress:
                progress("checking types", 0.6)
            dtypes = _choose_types(cur, "_import_text", n)
            dataset_id = project.next_id(cur, "dataset")
            table = data_table(dataset_id)
            try:
                with _ProgressPoller(cur, progress, "storing", 0.8, 0.98):
                    _create_converted(cur, table, "_import_text",
                                      [f"{_text_convert(data_column(i), d)} AS {data_column(i)}"
                                       for i, d in enumerate(dtypes)])
            except duckdb.ConversionException as exc:
                raise ServiceError(f"'{display}' could not be stored: {exc}. Nothing was imported.") from None
            negative = _negative_columns(cur, table, dtypes)
            columns = [(nm, d, default_scale(d, i in negative)) for i, (nm, d) in enumerate(zip(names, dtypes))]
            unique = _unique_name(cur, name)
            _register_dataset(cur, dataset_id, unique, columns, parent_id=None, read_only=False,
                              operation={"type": "import", "source": display, "format": fmt})
            return _load_info(cur, dataset_id)
        finally:
            with suppress(duckdb.Error):
                cur.execute("DROP TABLE IF EXISTS _import_text")


def _check_row_count(cur, path: Path, display: str, n_columns: int) -> None:
    """Refuse the import when DuckDB read another number of rows than the file has records (never lose rows)."""
    expected = max(_count_records(path) - 1, 0)  # less the header
    if n_columns == 1:  # DuckDB reads some empty lines of a one-column file as missing values
        read, with_value = cur.execute(
            "SELECT count(*), count(c0) FROM _import_text").fetchone()
        ok = with_value <= expected <= read
    else:
        read = cur.execute("SELECT count(*) FROM _import_text").fetchone()[0]
        ok = read == expected
    if not ok:
        raise ServiceError(
            f"'{display}' could not be read reliably: the file has {expected:,} data row"
            f"{'' if expected == 1 else 's'} but {read:,} were read, so nothing was imported. Save it again as a "
            "plain UTF-8 CSV (one line per row, no line breaks inside the header names) and import it again.")


def _import_parquet(project: Project, path: Path, name: str, display: str,
                    progress: Progress | None) -> DatasetInfo:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise ServiceError(f"'{display}' is not a readable Parquet file ({exc}); check the file and import it "
                           "again.") from None
    _check_width(len(schema.names), display)
    names = _unique_column_names(list(schema.names))
    n = len(names)
    if n == 0:
        raise ServiceError(f"'{display}' has no columns; there is nothing to import.")
    aliases = ", ".join(data_column(i) for i in range(n))
    relation = f"(SELECT * FROM read_parquet({quote_literal(str(path))}) AS _p({aliases}))"
    with project.write() as cur:
        _configure_progress(cur, progress is not None)
        try:
            described = cur.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        except duckdb.Error as exc:
            raise ServiceError(f"'{display}' is not a readable Parquet file ({str(exc).splitlines()[0]}).") from None
        dtypes, exprs = [], []
        for i, row in enumerate(described):
            col, type_name = data_column(i), str(row[1])
            dtype = _duck_dtype(type_name)
            if dtype is None:
                dtype, expr = "string", f"CAST({col} AS VARCHAR)"
            elif type_name.upper() == "TIMESTAMP WITH TIME ZONE":
                expr = f"CAST(timezone('UTC', {col}) AS TIMESTAMP)"
            else:
                expr = f"CAST({col} AS {_SQL_TYPES[dtype]})"
            dtypes.append(dtype)
            exprs.append(f"{expr} AS {col}")
        dataset_id = project.next_id(cur, "dataset")
        table = data_table(dataset_id)
        try:
            with _ProgressPoller(cur, progress, "storing", 0.0, 0.95):
                cur.execute(f"CREATE TABLE {table} AS SELECT {', '.join(exprs)} FROM {relation}")
        except duckdb.Error as exc:
            if is_disk_full(exc):
                raise disk_full(f"'{display}' could not be imported") from None
            raise ServiceError(f"'{display}' could not be read: {str(exc).splitlines()[0]}. Nothing was "
                               "imported.") from None
        negative = _negative_columns(cur, table, dtypes)
        columns = [(nm, d, default_scale(d, i in negative)) for i, (nm, d) in enumerate(zip(names, dtypes))]
        unique = _unique_name(cur, name)
        _register_dataset(cur, dataset_id, unique, columns, parent_id=None, read_only=False,
                          operation={"type": "import", "source": display, "format": "parquet"})
        return _load_info(cur, dataset_id)


