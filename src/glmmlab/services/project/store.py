"""The project store: one DuckDB database file per project, owned by one :class:`Project` object.

Nothing else in glmmlab opens a project file. All changes go through :meth:`Project.write`, which holds the single
writer lock and wraps the work in one DuckDB transaction, so a change is either committed completely or not at all
(also when the process is killed half-way). Reads go through :meth:`Project.read`, which hands each caller its own
cursor, so several threads can read while one writes.

Catalogue tables (see ``_MIGRATIONS`` for the exact columns):

- ``datasets``: one row per dataset, primary or derived (``parent_id``, ``operation`` JSON, ``read_only``).
- ``columns``: one row per column of a dataset, in order (``position``), with the user's ``name``, ``dtype``
  and measurement ``scale``.
- ``models``: saved models (``spec`` and ``result`` JSON, ``diagnostics_dataset_id``).
- ``reports`` and ``report_items``: reports and their items in order.
- ``meta``: key/value settings of the project (for example whether the sample datasets were created).
- ``schema_version``: the version of this layout; :func:`_migrate` brings older files up to date.

The data of dataset ``id`` live in the table ``ds_<id>`` whose columns are ``c0``, ``c1``, ... in the order of the
``columns`` catalogue. Table and column names are therefore never built from user text; user text only ever
reaches SQL as a bound parameter or through :func:`quote_ident` or :func:`quote_literal`.

The schema and its migrations, the writer lock and the transactions are together what owning the one DuckDB file
means, and each needs the others' internals; what the path given is (a folder, a FIFO, a SQLite file, a read-only
file) is checked before anything opens it, by :mod:`~glmmlab.services.project.project_file`.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from glmmlab.services.errors import NotFound, ProjectBusy, ProjectDamaged, ServiceError, disk_full, is_disk_full
from glmmlab.services.project.project_file import _check_writable, _checked_path, _looks_like_duckdb

SCHEMA_VERSION = 2

# A saved model's per-row diagnostics live once, in its diagnostics dataset; the model's result document does not
# repeat them (version 1 did). A model whose diagnostics dataset was deleted keeps them in its document: there is no
# other copy. Used by the migration to version 2 and by the import of older exports.
DIAGNOSTICS_STORED_ONCE = ("""UPDATE models SET result = json_merge_patch(result, '{"diagnostics": null}') """
                           "WHERE result IS NOT NULL AND json_exists(result, '$.diagnostics') "
                           "AND diagnostics_dataset_id IN (SELECT id FROM datasets)")

# Each entry brings the schema from version i to i + 1. Append new entries (and raise SCHEMA_VERSION); never edit
# old ones. A new catalogue table also goes into CATALOGUE_TABLES (so exports include it) and a new id sequence into
# ID_SEQUENCES.
_MIGRATIONS: list[list[str]] = [
    [
        "CREATE SEQUENCE IF NOT EXISTS dataset_ids START 1",
        "CREATE SEQUENCE IF NOT EXISTS model_ids START 1",
        "CREATE SEQUENCE IF NOT EXISTS report_ids START 1",
        "CREATE SEQUENCE IF NOT EXISTS report_item_ids START 1",
        """CREATE TABLE IF NOT EXISTS datasets (
            id BIGINT PRIMARY KEY,
            name VARCHAR NOT NULL,
            n_rows BIGINT NOT NULL,
            parent_id BIGINT,
            operation JSON NOT NULL,
            read_only BOOLEAN NOT NULL DEFAULT FALSE,
            created_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
        """CREATE TABLE IF NOT EXISTS columns (
            dataset_id BIGINT NOT NULL,
            position INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            dtype VARCHAR NOT NULL,
            scale VARCHAR NOT NULL,
            PRIMARY KEY (dataset_id, position)
        )""",
        """CREATE TABLE IF NOT EXISTS models (
            id BIGINT PRIMARY KEY,
            name VARCHAR NOT NULL,
            dataset_id BIGINT NOT NULL,
            spec JSON NOT NULL,
            result JSON,
            diagnostics_dataset_id BIGINT,
            created_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
        """CREATE TABLE IF NOT EXISTS reports (
            id BIGINT PRIMARY KEY,
            name VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
        """CREATE TABLE IF NOT EXISTS report_items (
            id BIGINT PRIMARY KEY,
            report_id BIGINT NOT NULL,
            position INTEGER NOT NULL,
            kind VARCHAR NOT NULL,
            title VARCHAR,
            payload JSON,
            html VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value JSON)",
    ],
    [DIAGNOSTICS_STORED_ONCE],
]

CATALOGUE_TABLES = ("datasets", "columns", "models", "reports", "report_items", "meta")
# id kind -> (sequence, table whose ``id`` column it feeds)
ID_SEQUENCES = {"dataset": ("dataset_ids", "datasets"), "model": ("model_ids", "models"),
                "report": ("report_ids", "reports"), "report_item": ("report_item_ids", "report_items")}

# One writer lock per project file, shared by every Project object of this process that opens the same file.
_WRITER_LOCKS: dict[Path, threading.RLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(path, threading.RLock())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def is_damage(exc: BaseException) -> bool:
    """True when a DuckDB error says the file's bytes are bad (rather than that a query was wrong)."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(
        w in text for w in ("corrupt", "checksum", "could not read enough bytes", "invalid block", "failed to read"))


NO_EXTENSIONS: dict[str, str | bool | int | float | list[str]] = {"autoinstall_known_extensions": False,
                                                                "autoload_known_extensions": False}


def quote_ident(name: str) -> str:
    """Quote ``name`` as a DuckDB identifier (double quotes, inner quotes doubled), safe for any text."""
    if "\x00" in name:
        raise ServiceError("A name cannot contain the NUL character; rename the column or dataset.")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote ``text`` as a SQL string literal (single quotes, inner quotes doubled): file paths, patterns, values."""
    return "'" + str(text).replace("'", "''") + "'"


def data_table(dataset_id: int) -> str:
    """The name of the table that holds the rows of dataset ``dataset_id`` (built from the integer id only)."""
    return f"ds_{int(dataset_id)}"


def data_column(position: int) -> str:
    """The stored name of the column at ``position`` (0-based) in a dataset table."""
    return f"c{int(position)}"


class Project:
    """An open project file: the only owner of its DuckDB connection.

    Use :meth:`open` (or the class as a context manager after opening) rather than the constructor::

        with Project.open("analysis.duckdb") as project:
            with project.write() as cur:
                cur.execute("INSERT INTO meta VALUES (?, ?)", ["k", "1"])
            with project.read() as cur:
                cur.execute("SELECT count(*) FROM datasets").fetchone()
    """

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection):
        self.path = path
        self._con = con
        self._write_lock = _writer_lock(path)
        self._local = threading.local()  # .cursor: the cursor of this thread's running write(), if any
        self._closed = False
        self.damaged: dict[int, str] = {}  # dataset id -> why it cannot be read (found when the file was opened)
        # How long write() waits for another thread's change; None: as long as it takes. A server sets a few
        # seconds, so requests answer "busy" instead of piling up behind a long import; see patient().
        self.write_wait: float | None = None

    # -- opening and closing ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = True) -> "Project":
        """Open the project file at ``path``; create an empty project there when it is missing and ``create``.

        Raises :class:`NotFound` when the file is missing and ``create`` is false, and :class:`ServiceError` when
        the file is not a glmmlab project, was written by a newer glmmlab, or is open in another process.
        """
        path = _checked_path(path)  # the kind of file, before anything opens it (a FIFO would block)
        existed = path.exists()
        if not existed and not create:
            raise NotFound(f"There is no project file at {path}; check the path or create a new project.")
        if not existed:
            if not path.parent.is_dir():
                raise NotFound(f"The folder {path.parent} does not exist; create it first or choose another place.")
        _check_writable(path, existed)
        try:
            # never load (or download) a DuckDB extension to read a file: a project needs none
            con = duckdb.connect(str(path), config=NO_EXTENSIONS)
        except duckdb.IOException as exc:
            text = str(exc)
            if is_disk_full(exc):
                raise disk_full(f"The project {path.name} could not be opened") from None
            if "lock" in text.lower():
                raise ServiceError(
                    f"The project {path.name} is open in another program (or another glmmlab); close it there first."
                ) from exc
            if _looks_like_duckdb(path):
                raise ProjectDamaged(
                    f"The project file {path.name} is damaged and cannot be opened ({_first_line(exc)}). Nothing in "
                    "it can be read; restore it from a backup or an exported copy (File > Export Project). The file "
                    "is left as it is.") from None
            raise ServiceError(f"{path.name} is not a glmmlab project file (DuckDB could not read it: {text}).") \
                from exc
        except duckdb.Error as exc:
            raise ServiceError(f"{path.name} is not a glmmlab project file (DuckDB could not read it: {exc}).") from exc
        project = cls(path, con)
        try:
            project._migrate(existed)
            if existed:
                project._check()
        except duckdb.Error as exc:
            con.close()
            raise ProjectDamaged(
                f"The project file {path.name} is damaged and cannot be opened ({_first_line(exc)}). Nothing in it "
                "can be read; restore it from a backup or an exported copy (File > Export Project). The file is "
                "left as it is.") from None
        except BaseException:
            con.close()
            raise
        return project

    def _check(self) -> None:
        """Read the whole file once: the catalogue (a failure there is fatal) and every value of every dataset.

        Datasets that cannot be read go to :attr:`damaged` (id -> reason); the project still opens, so the rest can
        be used and exported. DuckDB checks each block's checksum as it reads it, so a full scan finds flipped bits.
        """
        with self.read() as cur:
            for table in CATALOGUE_TABLES:
                cur.execute(f"SELECT * FROM {table}").fetchall()
            rows = cur.execute("SELECT id, name, n_rows FROM datasets ORDER BY id").fetchall()
            tables = {r[0] for r in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                " AND schema_name = 'main'").fetchall()}
            columns: dict[int, list[int]] = {}
            for dataset_id, position in cur.execute("SELECT dataset_id, position FROM columns").fetchall():
                columns.setdefault(int(dataset_id), []).append(int(position))
        for dataset_id, name, n_rows in rows:
            table = data_table(dataset_id)
            if table not in tables:
                self.damaged[int(dataset_id)] = f"dataset '{name}': its data are missing"
                continue
            scan = ", ".join(f"bit_xor(hash({data_column(i)}))" for i in sorted(columns.get(int(dataset_id), [])))
            try:
                with self.read() as cur:
                    found = cur.execute(  # an aggregate: one row
                        f"SELECT count(*){', ' + scan if scan else ''} FROM {table}").fetchone()[0]  # type: ignore[index]
            except (duckdb.Error, ProjectDamaged) as exc:
                self.damaged[int(dataset_id)] = f"dataset '{name}': {_first_line(exc.__cause__ or exc)}"
                continue
            if int(found) != int(n_rows):
                self.damaged[int(dataset_id)] = f"dataset '{name}': {found} rows where {n_rows} were stored"

    def damaged_message(self, dataset_ids: list[int] | None = None) -> str | None:
        """What is damaged and what can be saved, or None when the file is whole (for ``dataset_ids``, if given)."""
        hit = [why for i, why in self.damaged.items() if dataset_ids is None or i in dataset_ids]
        if not hit:
            return None
        return (f"The project file {self.path.name} is damaged: {'; '.join(hit)}. The other datasets, models and "
                "reports can be used and are saved by File > Export Project (which leaves the damaged datasets out).")

    def check_readable(self, dataset_id: int) -> None:
        """Raise :class:`ProjectDamaged` when dataset ``dataset_id`` is one of the damaged ones."""
        message = self.damaged_message([int(dataset_id)])
        if message:
            raise ProjectDamaged(message)

    def close(self) -> None:
        """Close the connection (committed work is already on disk). Closing twice is harmless."""
        with self._write_lock:
            if not self._closed:
                self._closed = True
                self._con.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}{', closed' if self._closed else ''})"

    # -- reading and writing ---------------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise ServiceError(f"The project {self.path.name} is closed; open it again.")
        return self._con.cursor()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a cursor for reading, inside a read transaction, so everything read in the block is one snapshot.

        Each call gets a cursor of its own, so several threads can read at once (also while another thread
        writes); the cursor sees committed data only. Inside a :meth:`write` block of the same thread it yields
        that block's cursor instead, so the reads see the block's own changes.
        """
        active = getattr(self._local, "cursor", None)
        if active is not None:
            yield active
            return
        cur = self._cursor()
        try:
            cur.begin()
            yield cur
        except duckdb.Error as exc:
            if is_disk_full(exc):
                raise disk_full(f"{self.path.name} could not be read (the space for its temporary files)") from None
            if is_damage(exc):
                raise ProjectDamaged(
                    f"The project file {self.path.name} is damaged: part of it cannot be read ({_first_line(exc)}). "
                    "Export the project (File > Export Project) to save what can still be read.") from None
            raise
        finally:
            try:
                cur.rollback()
            except duckdb.Error:
                pass
            cur.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a cursor inside a transaction, holding the project's single writer lock.

        The transaction commits when the block ends normally and rolls back when it raises, so a change is all or
        nothing. Nested ``write()`` blocks in the same thread join the outer transaction. When another thread's change
        holds the lock for longer than :attr:`write_wait` (outside :meth:`patient`), :class:`ProjectBusy` is raised.
        """
        with self._locked_for_writing():
            outer = getattr(self._local, "cursor", None)
            if outer is not None:
                yield outer
                return
            cur = self._cursor()
            cur.begin()
            self._local.cursor = cur
            try:
                yield cur
            except BaseException as exc:
                try:
                    cur.rollback()
                except duckdb.Error:
                    pass
                finally:
                    self._local.cursor = None
                    cur.close()
                if is_disk_full(exc):
                    raise disk_full(f"The change could not be saved to {self.path.name}") from None
                if is_damage(exc):
                    raise ProjectDamaged(
                        f"The project file {self.path.name} is damaged: the change could not be made "
                        f"({_first_line(exc)}), and nothing was changed. Export the project (File > Export Project) "
                        "to save what can still be read, and import the export as a new project.") from None
                raise
            try:
                cur.commit()
            except duckdb.Error as exc:
                if is_disk_full(exc):
                    raise disk_full(f"The change could not be saved to {self.path.name}") from None
                raise ServiceError(f"The change could not be saved to {self.path.name}: {exc}") from exc
            finally:
                self._local.cursor = None
                cur.close()

    @contextmanager
    def _locked_for_writing(self) -> Iterator[None]:
        wait = None if getattr(self._local, "patient", False) else self.write_wait
        if not self._write_lock.acquire(timeout=-1 if wait is None else wait):
            raise ProjectBusy(f"The project {self.path.name} is busy with another change (an import, perhaps); "
                              "nothing was changed. Try again in a moment.")
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def patient(self) -> Iterator[None]:
        """Inside this block, this thread's writes wait for the lock as long as it takes (background jobs queue)."""
        before = getattr(self._local, "patient", False)
        self._local.patient = True
        try:
            yield
        finally:
            self._local.patient = before

    # -- settings --------------------------------------------------------------------------------------------

    def get_meta(self, key: str, default=None):
        """The value stored under ``key`` in the project's settings (JSON-decoded), or ``default``."""
        import json

        with self.read() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return default if row is None or row[0] is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        """Store ``value`` (JSON-encodable) under ``key`` (joins the running ``write()`` of this thread, if any)."""
        import json

        with self.write() as w:
            w.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, json.dumps(value)])

    # -- schema ----------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self.read() as cur:
            row = cur.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)  # type: ignore[index]  # an aggregate: one row

    def _migrate(self, existed: bool) -> None:
        with self.write() as cur:
            tables = {r[0] for r in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                " AND schema_name = 'main'").fetchall()}
            if "schema_version" not in tables:
                if existed and tables:
                    raise ServiceError(
                        f"{self.path.name} is a DuckDB database but not a glmmlab project; open a glmmlab project "
                        "file or choose a new file name.")
                cur.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP "
                            "DEFAULT current_localtimestamp())")
                version = 0
            else:
                version = int(cur.execute(  # an aggregate: one row
                    "SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])  # type: ignore[index]
            if version > SCHEMA_VERSION:
                raise ServiceError(
                    f"{self.path.name} was written by a newer glmmlab (project format {version}, this one reads up to "
                    f"{SCHEMA_VERSION}); update glmmlab to open it.")
            for target in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[target]:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", [target + 1])

    def next_id(self, cur: duckdb.DuckDBPyConnection, kind: str) -> int:
        """A new id for ``kind`` ('dataset', 'model', 'report' or 'report_item'); ids are never reused."""
        if kind not in ID_SEQUENCES:
            raise ValueError(f"unknown id kind {kind!r}")
        return int(cur.execute(f"SELECT nextval('{ID_SEQUENCES[kind][0]}')").fetchall()[0][0])
