"""Export a project to one file and import it again.

The export file is a ZIP archive (suggested extension ``.glmmlab``) holding

- ``manifest.json``: ``{"format": "glmmlab-project", "format_version": 1, "schema_version": ..., "datasets": [...],
  "columns": [...], "models": [...], "reports": [...], "report_items": [...], "meta": [...]}`` — the catalogue
  rows as JSON;
- ``data/ds_<id>.parquet``: the rows of each dataset, one Parquet file per dataset.

It is written from one consistent snapshot of the project, so it can be made while the workbench is in use, and it
does not depend on the DuckDB file format, so any glmmlab (or any Parquet reader) can open it. Importing reads only
those two kinds of members (never paths taken from the archive), checks every dataset against its catalogue entry,
builds the new project under a temporary name and renames it into place only when everything has loaded.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import zipfile
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import duckdb

from glmmlab.services.errors import DiskFull, NotFound, ProjectDamaged, ServiceError, disk_full, is_disk_full
from glmmlab.services.project.column_types import _SQL_TYPES, DTYPES, SCALES
from glmmlab.services.project.store import (
    CATALOGUE_TABLES,
    DIAGNOSTICS_STORED_ONCE,
    ID_SEQUENCES,
    SCHEMA_VERSION,
    Project,
    data_column,
    data_table,
    quote_literal,
)
from glmmlab.services.workbench import models, reports

FORMAT = "glmmlab-project"
MAX_MANIFEST_BYTES = 512 << 20  # the catalogue, model results with their per-row diagnostics included
MAX_INFLATED_BYTES = 32 << 30   # everything in one export, unpacked
FORMAT_VERSION = 1
_TABLES = CATALOGUE_TABLES
_SEQUENCES = dict(ID_SEQUENCES.values())  # sequence -> table


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    return value


def export_project(project: Project, dest_path: str | os.PathLike,
                   work_dir: str | os.PathLike | None = None) -> dict:
    """Write the whole project to the single file ``dest_path`` (replaced if it exists).

    Returns ``{"path", "datasets", "models", "reports", "bytes"}``. The file appears only when complete. Scratch
    files go to a temporary folder in ``work_dir`` (default: the system's temporary folder).
    """
    dest = Path(dest_path).expanduser().resolve()
    if dest.is_dir():
        raise ServiceError(f"{dest} is a folder; give a file name for the export, such as project.glmmlab.")
    if not dest.parent.is_dir():
        raise NotFound(f"The folder {dest.parent} does not exist; create it first or choose another place.")
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                                "schema_version": SCHEMA_VERSION, "project": project.path.name,
                                "exported_at": datetime.datetime.now().isoformat(timespec="seconds")}
    left_out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="glmmlab-export-", dir=work_dir) as tmp:
        with project.read() as cur:  # one snapshot for the catalogue and all the data
            for table in _TABLES:
                result = cur.execute(f"SELECT * FROM {table}")
                names = [d[0] for d in result.description]
                manifest[table] = [{k: _plain(v) for k, v in zip(names, row)} for row in result.fetchall()]
            manifest["sequences"] = {name: int(value) for name, value in cur.execute(
                "SELECT sequence_name, coalesce(last_value, start_value - 1) + 1 FROM duckdb_sequences() "
                "WHERE database_name = current_database()").fetchall() if name in _SEQUENCES}
        left_out += _unreadable_items(manifest)  # a report item that cannot be read stays behind, not the backup
        damaged: set[int] = set(project.damaged)
        for row in manifest["datasets"]:
            if int(row["id"]) in damaged:
                continue
            target = Path(tmp) / f"ds_{int(row['id'])}.parquet"
            try:
                with project.read() as cur:
                    cur.execute(f"COPY (SELECT * FROM {data_table(row['id'])}) TO {quote_literal(str(target))} "
                                "(FORMAT parquet, COMPRESSION zstd)")
            except ProjectDamaged:  # found only now: leave it out too, so the rest is saved
                damaged.add(int(row["id"]))
            except DiskFull:
                raise disk_full("The project could not be exported") from None
        if damaged:
            left_out += _leave_out(manifest, damaged)
        manifest["left_out"] = left_out
        partial = dest.with_name(dest.name + ".partial")
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("manifest.json", json.dumps(manifest, indent=1, default=str))
                for row in manifest["datasets"]:
                    zf.write(Path(tmp) / f"ds_{int(row['id'])}.parquet", f"data/ds_{int(row['id'])}.parquet",
                             compress_type=zipfile.ZIP_STORED)
            os.replace(partial, dest)
        except OSError as exc:
            _full(exc, "The project could not be exported")
            raise
        finally:
            with suppress(OSError):
                partial.unlink()
    return {"path": str(dest), "datasets": len(manifest["datasets"]), "models": len(manifest["models"]),
            "reports": len(manifest["reports"]), "bytes": dest.stat().st_size, "left_out": left_out}


def _unreadable_items(manifest: dict[str, Any]) -> list[str]:
    """Drop the report items that cannot be read (stored before items were checked, or damaged) from the
    catalogue; returns what was left out."""
    names = {r.get("id"): r.get("name") for r in manifest["reports"]}
    kept, out = [], []
    for item in manifest["report_items"]:
        try:
            reports.check_item(item.get("kind"), item.get("title"), _json_field(item.get("payload")))
        except (ServiceError, ValueError, TypeError, RecursionError):
            out.append(f"report item '{item.get('title')}' of report '{names.get(item.get('report_id'))}' "
                       "(it cannot be read)")
            continue
        kept.append(item)
    manifest["report_items"] = kept
    return out


def _leave_out(manifest: dict[str, Any], damaged: set[int]) -> list[str]:
    """Drop damaged datasets from an export's catalogue with what cannot stand without them; returns their names.

    Models fitted on a dropped dataset go too; a dataset derived from one keeps its rows and becomes primary; a
    model whose diagnostics dataset is dropped keeps its results without the link.
    """
    names = [f"dataset '{r['name']}'" for r in manifest["datasets"] if int(r["id"]) in damaged]
    manifest["datasets"] = [r for r in manifest["datasets"] if int(r["id"]) not in damaged]
    manifest["columns"] = [c for c in manifest["columns"] if int(c["dataset_id"]) not in damaged]
    for r in manifest["datasets"]:
        if r.get("parent_id") is not None and int(r["parent_id"]) in damaged:
            r["parent_id"] = None
    names += [f"model '{m['name']}'" for m in manifest["models"] if int(m["dataset_id"]) in damaged]
    manifest["models"] = [m for m in manifest["models"] if int(m["dataset_id"]) not in damaged]
    for m in manifest["models"]:
        if m.get("diagnostics_dataset_id") is not None and int(m["diagnostics_dataset_id"]) in damaged:
            m["diagnostics_dataset_id"] = None
    return names


def _full(exc: BaseException, what: str) -> None:
    if is_disk_full(exc):
        raise disk_full(what) from None


class _Budget:
    """What may still be unpacked from one export (a zip bomb stops here, whatever its members claim)."""

    def __init__(self, total: int):
        self.left = total


def _inflate(src: Path, zf: zipfile.ZipFile, name: str, dest: Path | None, limit: int | _Budget) -> bytes:
    """Unpack member ``name`` (into ``dest``, or returned as bytes), counting while streaming.

    Refuses a member larger than its limit (an int, or what is left of a :class:`_Budget`) or than the size its
    header states, before more than one chunk past the limit is held or written.
    """
    info = zf.getinfo(name)
    cap = limit.left if isinstance(limit, _Budget) else limit
    if info.file_size > cap:
        raise _too_big(src, name, cap)
    seen = 0
    chunks: list[bytes] = []
    with zf.open(info) as member, (open(dest, "wb") if dest is not None else nullcontext()) as out:
        while chunk := member.read(1 << 20):
            seen += len(chunk)
            if seen > cap or seen > info.file_size:
                raise _too_big(src, name, cap)
            if out is not None:
                out.write(chunk)
            else:
                chunks.append(chunk)
    if isinstance(limit, _Budget):
        limit.left -= seen
    return b"".join(chunks)


def _too_big(src: Path, name: str, cap: int) -> ServiceError:
    return _bad(src, f"'{name}' unpacks to more than {cap / (1 << 20):,.0f} MiB (more than its size says, or more "
                     "than an export of a project can hold); it looks like a zip bomb")


def _bad(src: Path, why: str) -> ServiceError:
    return ServiceError(f"'{src.name}' is not a usable glmmlab project export: {why}. Export the project again "
                        "and import the new file.")


def _read_manifest(src: Path, zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(_inflate(src, zf, "manifest.json", None, MAX_MANIFEST_BYTES).decode("utf-8"))
    except KeyError:
        raise _bad(src, "it has no manifest.json") from None
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise _bad(src, f"its manifest.json cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(src, "its manifest.json does not describe a glmmlab project")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ServiceError(f"'{src.name}' was exported by a newer glmmlab (export format {version}); update glmmlab "
                           "to import it.")
    schema = manifest.get("schema_version")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise ServiceError(f"'{src.name}' holds a project from a newer glmmlab (project format {schema}); update "
                           "glmmlab to import it.")
    for table in _TABLES:
        rows = manifest.get(table, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise _bad(src, f"the '{table}' list in manifest.json is damaged")
        manifest[table] = rows
    members = set(zf.namelist())
    for row in manifest["datasets"]:
        if not isinstance(row.get("id"), int) or not isinstance(row.get("name"), str):
            raise _bad(src, "a dataset entry in manifest.json has no id or name")
        if f"data/ds_{row['id']}.parquet" not in members:
            raise _bad(src, f"the data of dataset '{row['name']}' are missing")
    ids = {row["id"] for row in manifest["datasets"]}
    for col in manifest["columns"]:
        if col.get("dataset_id") not in ids or col.get("dtype") not in DTYPES or col.get("scale") not in SCALES \
                or not isinstance(col.get("name"), str) or not isinstance(col.get("position"), int):
            raise _bad(src, "a column entry in manifest.json is damaged")
    _check_entries(src, manifest, ids)
    return manifest


def _json_field(value: Any) -> Any:
    """A JSON column as exported (text), or already decoded."""
    if isinstance(value, str):
        return json.loads(value)
    return value


def _check_entries(src: Path, manifest: dict[str, Any], dataset_ids: set) -> None:
    """Everything the pages will read must make sense before the project is accepted: lineage, models, reports."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for row in manifest["datasets"]:
        if not whole(row.get("n_rows")) or row["n_rows"] < 0 or \
                (row.get("parent_id") is not None and row["parent_id"] not in dataset_ids):
            raise _bad(src, f"the entry of dataset '{row['name']}' is damaged")
        try:
            if not isinstance(_json_field(row.get("operation")), dict):
                raise ValueError
        except (ValueError, TypeError):
            raise _bad(src, f"the operation of dataset '{row['name']}' is damaged") from None
    for m in manifest["models"]:
        name = m.get("name")
        if not whole(m.get("id")) or not isinstance(name, str) or m.get("dataset_id") not in dataset_ids or \
                (m.get("diagnostics_dataset_id") is not None and m["diagnostics_dataset_id"] not in dataset_ids):
            raise _bad(src, f"the entry of model {name!r} is damaged")
        try:
            if not isinstance(_json_field(m.get("spec")), dict):
                raise ValueError("the spec is not an object")
            models.check_result(_json_field(m.get("result")))
        except (ValueError, TypeError) as exc:  # ServiceError is a ValueError
            raise _bad(src, f"model '{name}': {exc}") from None
    report_ids = set()
    for r in manifest["reports"]:
        if not whole(r.get("id")) or not isinstance(r.get("name"), str):
            raise _bad(src, "a report entry is damaged")
        report_ids.add(r["id"])
    for item in manifest["report_items"]:
        if not whole(item.get("id")) or item.get("report_id") not in report_ids or not whole(item.get("position")):
            raise _bad(src, "a report item entry is damaged")
        try:
            reports.check_item(item.get("kind"), item.get("title"), _json_field(item.get("payload")))
        except (ValueError, TypeError) as exc:
            raise _bad(src, f"an item of a report is damaged ({exc})") from None
    for entry in manifest["meta"]:
        if not isinstance(entry.get("key"), str):
            raise _bad(src, "a setting in manifest.json is damaged")


def import_project(src_path: str | os.PathLike, dest_path: str | os.PathLike,
                   work_dir: str | os.PathLike | None = None) -> Project:
    """Create the project file ``dest_path`` from the export file ``src_path`` and return it open.

    Refuses (``ServiceError``) a file that is not a glmmlab export or is damaged, and a ``dest_path`` that already
    exists; nothing is left behind at ``dest_path`` when it refuses. Scratch files go to a temporary folder in
    ``work_dir`` (default: the system's temporary folder).
    """
    src = Path(src_path).expanduser().resolve()
    dest = Path(dest_path).expanduser().resolve()
    if not src.is_file():
        raise NotFound(f"There is no file at {src}; check the path of the export file.")
    if dest.exists():
        raise ServiceError(f"There is already a file at {dest}; choose another name for the imported project.")
    if not dest.parent.is_dir():
        raise NotFound(f"The folder {dest.parent} does not exist; create it first or choose another place.")
    if not zipfile.is_zipfile(src):
        raise _bad(src, "it is not a ZIP archive")
    building = dest.with_name(f".{dest.name}.importing")
    for leftover in (building, building.with_name(building.name + ".wal")):
        with suppress(OSError):
            leftover.unlink()
    try:
        with zipfile.ZipFile(src) as zf, tempfile.TemporaryDirectory(prefix="glmmlab-import-", dir=work_dir) as tmp:
            manifest = _read_manifest(src, zf)
            project = Project.open(building, create=True)
            try:
                _load(project, src, zf, manifest, Path(tmp), _Budget(MAX_INFLATED_BYTES))
                _render_all(project, src)
            finally:
                project.close()
        os.replace(building, dest)
    except zipfile.BadZipFile as exc:
        raise _bad(src, f"the archive is damaged ({exc})") from None
    except (OSError, duckdb.Error) as exc:
        _full(exc, f"'{src.name}' could not be imported")
        raise
    finally:
        for leftover in (building, building.with_name(building.name + ".wal")):
            with suppress(OSError):
                leftover.unlink()
    return Project.open(dest, create=False)


def _render_all(project: Project, src: Path) -> None:
    """Read back every model and report of the new project the way the pages do; any failure refuses the import."""
    for entry in reports.list_reports(project):
        try:
            reports.export_html(project, entry["id"])
        except Exception as exc:  # noqa: BLE001 - whatever breaks here would break the page later
            raise _bad(src, f"report '{entry['name']}' cannot be shown ({exc.__class__.__name__}: {exc})") from None
    for entry in models.list_models(project):
        try:
            model = models.get_model(project, entry["id"])
            models.fixed_effects_at(model["result"], model["result"]["model"]["conf_level"])
        except Exception as exc:  # noqa: BLE001
            raise _bad(src, f"model '{entry['name']}' cannot be shown ({exc.__class__.__name__}: {exc})") from None


def _load(project: Project, src: Path, zf: zipfile.ZipFile, manifest: dict[str, Any], tmp: Path,
          budget: _Budget) -> None:
    columns_of: dict[int, list[dict]] = {}
    for col in manifest["columns"]:
        columns_of.setdefault(col["dataset_id"], []).append(col)
    with project.write() as cur:
        for table in _TABLES:
            have = [r[0] for r in cur.execute(f"DESCRIBE {table}").fetchall()]
            for row in manifest[table]:
                unknown = set(row) - set(have)
                if unknown:
                    raise _bad(src, f"the '{table}' entries have fields this glmmlab does not know "
                                    f"({', '.join(sorted(unknown))})")
                names = list(row)
                try:
                    cur.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                [row[n] for n in names])
                except duckdb.Error as exc:
                    _full(exc, f"'{src.name}' could not be imported")
                    raise _bad(src, f"an entry of '{table}' cannot be stored ({str(exc).splitlines()[0]})") from None
        for row in manifest["datasets"]:
            dataset_id = row["id"]
            cols = sorted(columns_of.get(dataset_id, []), key=lambda c: c["position"])
            if [c["position"] for c in cols] != list(range(len(cols))):
                raise _bad(src, f"the columns of dataset '{row['name']}' are damaged")
            target = tmp / f"ds_{dataset_id}.parquet"
            _inflate(src, zf, f"data/ds_{dataset_id}.parquet", target, budget)
            try:
                found = cur.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(target))})").fetchall()
                if len(found) != len(cols):
                    raise _bad(src, f"the data of dataset '{row['name']}' do not match its columns")
                aliases = ", ".join(data_column(i) for i in range(len(cols)))
                select = ", ".join(f"CAST({data_column(c['position'])} AS {_SQL_TYPES[c['dtype']]}) AS "
                                   f"{data_column(c['position'])}" for c in cols)
                cur.execute(f"CREATE TABLE {data_table(dataset_id)} AS SELECT {select or '1 AS _empty'} FROM "
                            f"(SELECT * FROM read_parquet({quote_literal(str(target))}) AS _p({aliases}))")
                n = cur.execute(f"SELECT count(*) FROM {data_table(dataset_id)}").fetchall()[0][0]
            except duckdb.Error as exc:
                _full(exc, f"'{src.name}' could not be imported")
                raise _bad(src, f"the data of dataset '{row['name']}' cannot be read "
                                f"({str(exc).splitlines()[0]})") from None
            finally:
                with suppress(OSError):
                    target.unlink()
            if n != row.get("n_rows"):
                raise _bad(src, f"dataset '{row['name']}' should have {row.get('n_rows')} rows but has {n}")
        cur.execute(DIAGNOSTICS_STORED_ONCE)  # an export of a version-1 project repeats them in the documents
        for sequence, table in _SEQUENCES.items():
            top = cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchall()[0][0]
            start = max(int(top), int(manifest.get("sequences", {}).get(sequence, 1) or 1))
            cur.execute(f"CREATE OR REPLACE SEQUENCE {sequence} START {start}")
