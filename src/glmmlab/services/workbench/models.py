"""Saved models: a fit's specification and result document, stored with its diagnostics dataset.

:func:`save_model` writes the model row and creates the read-only derived dataset of diagnostics (source ``row``,
``fitted_values``, ``deviance_residuals``, ``pearson_residuals``, ``group_random_effect``) in one transaction, so a
project never holds one without the other. The per-row diagnostics are stored once, in that dataset: the stored
result document leaves them out, and :func:`diagnostics_of` reads them back in the document's shape. Model names are
unique in a project. Deleting the analysed dataset deletes its models (see
:func:`glmmlab.services.project.lineage.delete_dataset`); :func:`delete_model` removes a model and its diagnostics."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pandas as pd

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project import catalogue, lineage
from glmmlab.services.project.store import Project
from glmmlab.services.views import result_view

DIAGNOSTIC_COLUMNS = ("row", "fitted_values", "deviance_residuals", "pearson_residuals", "group_random_effect")
MAX_NAME = 200


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ServiceError("Give the model a name (Model Name).")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ServiceError(f"The model name is too long (at most {MAX_NAME} characters).")
    if any(ord(c) < 32 for c in name):
        raise ServiceError("A model name cannot contain control characters.")
    return name


def _model_id(model_id: Any) -> int:
    try:
        return int(model_id)
    except (TypeError, ValueError, OverflowError):
        raise NotFound(f"There is no model with id {model_id!r}.") from None


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_result(result: Any) -> None:
    """Raise :class:`ServiceError` unless ``result`` has the shape of a fit's result document that the pages read.

    Used on documents that come from outside (a project import): the keys, their types, a family and link that
    exist, and the fixed-effects, random-effects and BLUP rows.
    """
    from glmmlab.engine.families.catalogue import FAMILIES

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ServiceError(f"the model result is damaged: {what}")

    need(isinstance(result, dict), "it is not an object")
    m = result.get("model")
    need(isinstance(m, dict), "'model' is missing")
    need(m.get("family") in FAMILIES, "'model.family' is not a family")
    need(m.get("link") in FAMILIES[m["family"]].links, "'model.link' is not a link of its family")
    for key in ("response", "group"):
        need(isinstance(m.get(key), str), f"'model.{key}' is not text")
    need(isinstance(m.get("fixed"), list) and all(isinstance(f, str) for f in m["fixed"]),
         "'model.fixed' is not a list of names")
    need(isinstance(m.get("intercept"), bool), "'model.intercept' is not true or false")
    need(isinstance(m.get("nagq", 1), int) and not isinstance(m.get("nagq", 1), bool), "'model.nagq' is not whole")
    try:
        check_conf_level(m.get("conf_level"))
    except ServiceError:
        need(False, "'model.conf_level' is not a confidence level")
    for key in ("n_obs", "n_groups"):
        need(isinstance(result.get(key), int) and not isinstance(result.get(key), bool), f"'{key}' is not whole")
    fit = result.get("fit")
    need(isinstance(fit, dict) and isinstance(fit.get("log_likelihood_kind"), str), "'fit' is missing")
    for key in ("log_likelihood", "aic", "bic"):
        need(_number_or_none(fit.get(key)), f"'fit.{key}' is not a number")
    need(_number_or_none(result.get("icc")), "'icc' is not a number")
    rows = result.get("fixed_effects")
    need(isinstance(rows, list) and all(isinstance(r, dict) for r in rows), "'fixed_effects' is not a table")
    for r in rows:
        need(isinstance(r.get("variable"), str), "a fixed effect has no name")
        need(all(_number_or_none(v) for k, v in r.items() if k != "variable"), "a fixed effect is not a number")
    for key in ("random_effects", "blup", "warnings"):
        need(isinstance(result.get(key, []), list), f"'{key}' is not a list")
    need(all(isinstance(r, dict) for r in result.get("random_effects", [])), "'random_effects' is not a table")
    for b in result.get("blup", []):
        need(isinstance(b, dict) and {"group", "random_intercept", "std_error", "rank"} <= set(b),
             "a BLUP row is damaged")
        need(all(_number_or_none(b[k]) for k in ("random_intercept", "std_error", "rank")), "a BLUP is not a number")
    need(all(isinstance(w, str) for w in result.get("warnings", [])), "'warnings' is not a list of sentences")
    if result.get("diagnostics") is not None:
        diagnostics_frame(result)


def diagnostics_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The diagnostics dataset of a result document: one row per observation used in the fit."""
    diag = result.get("diagnostics") or {}
    rows = diag.get("row") or []
    frame = pd.DataFrame({"row": pd.Series(rows, dtype="int64")})
    for col in DIAGNOSTIC_COLUMNS[1:]:
        values = diag.get(col) or []
        if len(values) != len(rows):
            raise ServiceError(f"The fit's diagnostics are incomplete ('{col}' has {len(values)} values for "
                               f"{len(rows)} rows); run the model again.")
        frame[col] = pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
    return frame


def data_fingerprint(frame: pd.DataFrame, dtypes: dict[str, str]) -> dict[str, Any]:
    """What a model's data were: the dataset's row count and, per column the model reads (``frame``'s columns),
    its type (``dtypes``: the dataset's column types) and a SHA-256 checksum of its values in row order."""
    columns: dict[str, Any] = {}
    for col in frame.columns:
        values = pd.util.hash_pandas_object(frame[col], index=False).to_numpy()
        columns[str(col)] = {"dtype": dtypes.get(col, str(frame[col].dtype)),
                             "checksum": hashlib.sha256(values.tobytes()).hexdigest()}
    return {"n_rows": int(len(frame)), "columns": columns}


def column_types(project: Project, dataset_id: int, columns: list[str]) -> dict[str, str]:
    """The dataset's types of ``columns`` (those it has)."""
    info = catalogue.get_dataset(project, dataset_id)
    names = {c.name for c in info.columns}
    return {c: info.column(c).dtype for c in columns if c in names}


def check_data(model: dict[str, Any], frame: pd.DataFrame, dtypes: dict[str, str]) -> None:
    """Refuse (:class:`ServiceError`) to refit a saved model when its dataset's rows, the types of the columns it
    uses or their values differ from when it was fitted. ``frame`` holds (at least) the model's columns. A model
    saved before fingerprints were kept has none and is not checked here."""
    was = (model.get("spec") or {}).get("data_fingerprint")
    if not isinstance(was, dict) or not isinstance(was.get("columns"), dict):
        return
    name = model.get("name", "")
    again = ("its saved results no longer describe these data. Run the model again on the current data and save "
             "it anew (or undo the change) to compare it or compute its intervals.")
    if was.get("n_rows") is not None and len(frame) != was["n_rows"]:
        raise ServiceError(f"The dataset of model '{name}' has changed since the model was saved: it has "
                           f"{len(frame):,} rows now, {was['n_rows']:,} then; {again}")
    cols = [c for c in was["columns"] if c in frame.columns]
    missing = [c for c in was["columns"] if c not in frame.columns]
    if missing:
        raise ServiceError(f"The dataset of model '{name}' has changed since the model was saved: column(s) "
                           f"{', '.join(repr(c) for c in missing)} are gone; {again}")
    now = data_fingerprint(frame[cols], dtypes)["columns"]
    for c in cols:
        if now[c]["dtype"] != was["columns"][c].get("dtype"):
            raise ServiceError(f"The dataset of model '{name}' has changed since the model was saved: column "
                               f"'{c}' was {was['columns'][c].get('dtype')} and is now {now[c]['dtype']}; {again}")
    changed = [c for c in cols if now[c]["checksum"] != was["columns"][c].get("checksum")]
    if changed:
        raise ServiceError(f"The dataset of model '{name}' has changed since the model was saved: the values of "
                           f"column(s) {', '.join(repr(c) for c in changed)} differ; {again}")


def save_model(project: Project, name: str, dataset_id: int, spec: dict[str, Any],
               result: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a fitted model and create its diagnostics dataset (child of ``dataset_id``), all or nothing.

    ``data`` is the :func:`data_fingerprint` of the data the fit read; it is kept in the spec
    (``data_fingerprint``) so that a refit of the saved model on changed data is refused (:func:`check_data`)."""
    name = _check_name(name)
    if data is not None:
        spec = dict(spec, data_fingerprint=data)
    frame = diagnostics_frame(result)
    with project.write() as cur:
        _check_unique(cur, name)
        parent = catalogue.get_dataset(project, dataset_id)
        model_id = project.next_id(cur, "model")
        diag = catalogue.store_frame(
            project, frame, f"{name} diagnostics", parent_id=parent.id, read_only=True,
            operation={"type": "model_diagnostics", "model_id": model_id, "model_name": name,
                       "description": f"Diagnostics of model '{name}' fitted on '{parent.name}'"})
        stored = {k: v for k, v in result.items() if k != "diagnostics"}  # they are the diagnostics dataset
        cur.execute("INSERT INTO models (id, name, dataset_id, spec, result, diagnostics_dataset_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [model_id, name, parent.id, json.dumps(spec), json.dumps(stored, allow_nan=False),
                     diag.id])
    return dict(get_model(project, model_id), diagnostics_dataset_name=diag.name)


def has_diagnostics(model: dict[str, Any]) -> bool:
    """Whether the model's per-row diagnostics can be read (its diagnostics dataset, or an older document's copy)."""
    return model.get("diagnostics_dataset_id") is not None or bool((model.get("result") or {}).get("diagnostics"))


def diagnostics_of(project: Project, model: dict[str, Any]) -> dict[str, list] | None:
    """The model's per-row diagnostics in the result document's shape (``{"row": [...], "fitted_values": [...],
    ...}``), read from its diagnostics dataset; a model saved before they were stored once, whose dataset was
    deleted, still has them in its document; otherwise None."""
    if model.get("diagnostics_dataset_id") is not None:
        try:
            frame = catalogue.read_frame(project, model["diagnostics_dataset_id"], list(DIAGNOSTIC_COLUMNS))
        except NotFound:
            frame = None
        if frame is not None:
            out: dict[str, list] = {"row": [int(r) for r in frame["row"]]}
            for col in DIAGNOSTIC_COLUMNS[1:]:
                out[col] = [None if math.isnan(v) else float(v) for v in frame[col].to_numpy(dtype=float)]
            return out
    return (model.get("result") or {}).get("diagnostics")


def _check_unique(cur, name: str, model_id: int | None = None) -> None:
    """Model names are unique in a project (compared without case)."""
    row = cur.execute("SELECT name FROM models WHERE lower(name) = lower(?) AND id IS DISTINCT FROM ?",
                      [name, model_id]).fetchone()
    if row is not None:
        raise ServiceError(f"There is already a model called '{row[0]}' in this project; choose another Model Name.",
                           field="name")


def _row_to_dict(row, full: bool) -> dict[str, Any]:
    spec = json.loads(row[3]) if row[3] else {}
    out = {"id": int(row[0]), "name": row[1], "dataset_id": int(row[2]), "spec": spec,
           "diagnostics_dataset_id": None if row[5] is None else int(row[5]),
           "created_at": row[6].isoformat() if hasattr(row[6], "isoformat") else str(row[6]),
           "dataset_name": row[7]}
    if full:
        out["result"] = json.loads(row[4]) if row[4] else None
    return out


_SELECT = ("SELECT m.id, m.name, m.dataset_id, m.spec, {result}, m.diagnostics_dataset_id, m.created_at, d.name "
           "FROM models m LEFT JOIN datasets d ON d.id = m.dataset_id")


def list_models(project: Project) -> list[dict[str, Any]]:
    """Saved models, oldest first (without their result documents)."""
    with project.read() as cur:
        rows = cur.execute(_SELECT.format(result="NULL") + " ORDER BY m.id").fetchall()
    return [_row_to_dict(r, full=False) for r in rows]


def get_model(project: Project, model_id: int) -> dict[str, Any]:
    """One saved model with its ``spec`` and ``result`` document; :class:`NotFound` when there is none."""
    mid = _model_id(model_id)
    with project.read() as cur:
        row = cur.execute(_SELECT.format(result="m.result") + " WHERE m.id = ?", [mid]).fetchone()
    if row is None:
        raise NotFound(f"There is no model with id {mid}; it may have been deleted.")
    return _row_to_dict(row, full=True)


def rename_model(project: Project, model_id: int, name: str) -> dict[str, Any]:
    """Give the model a new name (checked as at saving: not empty, unique in the project without case) and its
    diagnostics dataset "<name> diagnostics" (made unique as at saving), in one transaction."""
    name = _check_name(name)
    mid = _model_id(model_id)
    with project.write() as cur:
        row = cur.execute("SELECT diagnostics_dataset_id FROM models WHERE id = ?", [mid]).fetchone()
        if row is None:
            raise NotFound(f"There is no model with id {mid}; it may have been deleted.")
        _check_unique(cur, name, mid)
        cur.execute("UPDATE models SET name = ? WHERE id = ?", [name, mid])
        diag = cur.execute("SELECT id, name, operation FROM datasets WHERE id = ?", [row[0]]).fetchone() \
            if row[0] is not None else None
        if diag is not None:
            wanted = f"{name} diagnostics"
            taken = {r[0] for r in cur.execute("SELECT name FROM datasets WHERE id <> ?", [diag[0]]).fetchall()}
            new_name = catalogue.free_name(wanted, taken, "{base} ({n})")
            operation = json.loads(diag[2]) if diag[2] else {}
            if operation.get("type") == "model_diagnostics":
                old = operation.get("model_name")
                operation["model_name"] = name
                if isinstance(operation.get("description"), str) and old is not None:
                    operation["description"] = operation["description"].replace(f"model '{old}'",
                                                                                f"model '{name}'", 1)
            cur.execute("UPDATE datasets SET name = ?, operation = ? WHERE id = ?",
                        [new_name, json.dumps(operation, default=str), diag[0]])
    return get_model(project, mid)


def delete_model(project: Project, model_id: int) -> dict[str, Any]:
    """Delete a model and its diagnostics dataset (with anything derived from that) in one transaction."""
    model = get_model(project, model_id)
    with project.write() as cur:
        cur.execute("DELETE FROM models WHERE id = ?", [model["id"]])
        deleted: dict[str, Any] = {"datasets": []}
        if model["diagnostics_dataset_id"] is not None:
            try:
                deleted = lineage.delete_dataset(project, model["diagnostics_dataset_id"])
            except NotFound:
                pass
    return {"model": {"id": model["id"], "name": model["name"]}, "datasets": deleted.get("datasets", [])}


def check_conf_level(conf_level: Any) -> float:
    try:
        level = float(conf_level)
    except (TypeError, ValueError, OverflowError):
        raise ServiceError("Confidence Level must be a number between 50 and 99.99 (%).") from None
    if not (0.5 <= level <= 0.9999) or not math.isfinite(level):
        raise ServiceError(f"Confidence Level must be between 50% and 99.99%; got {level * 100:g}%.")
    return level


def fixed_effects_at(result: dict[str, Any], conf_level: float) -> list[dict[str, Any]]:
    """The fixed-effects table recomputed at ``conf_level`` (checked) from the stored estimates and standard errors;
    the stored result is not changed. See :func:`glmmlab.services.views.result_view.fixed_effects_at`."""
    return result_view.fixed_effects_at(result, check_conf_level(conf_level))


# -- fitting a form's spec, and refitting a saved model (its intervals need the data; a model keeps JSON only) ----
def spec_columns(spec: dict[str, Any]) -> list[str]:
    """The dataset columns a GLMM form's spec reads (the general form lists them; the simple one names them)."""
    if spec.get("formula"):
        return list(spec["columns"])
    return list(dict.fromkeys([spec["response"], spec["group"], *spec["fixed"]]))


def fit_form(frame: pd.DataFrame, spec: dict[str, Any], progress=None):
    """Fit a GLMM form's spec to its dataset's columns: ``fit_spec`` with a ModelSpec for the general form (a
    formula), ``fit_glmm`` for the product page's random-intercept form."""
    from glmmlab.engine.model.spec import ModelSpec
    from glmmlab.services.modeling.fitted import fit_spec

    if spec.get("formula"):
        model = ModelSpec(spec["formula"], family=spec["family"], link=spec["link"], weights=spec.get("weights"),
                          reference_levels=spec.get("reference_levels"), conf_level=spec["conf_level"],
                          max_iter=spec["max_iter"], tol=spec["tol"],
                          nagq=spec["nagq"], ddf=spec.get("ddf", "none"), zi=spec.get("zi"), disp=spec.get("disp"),
                          levels=spec.get("levels"),
                          **({"dispersion": spec["dispersion"]} if spec.get("dispersion") else {}))
        return fit_spec(frame, model, progress=progress)
    model = ModelSpec.random_intercept(spec["response"], spec["group"], list(spec["fixed"]), spec["intercept"],
                                       family=spec["family"], link=spec["link"], conf_level=spec["conf_level"],
                                       max_iter=spec["max_iter"], tol=spec["tol"], nagq=spec["nagq"],
                                       ddf=spec.get("ddf", "none"),
                                       **({"dispersion": spec["dispersion"]} if spec.get("dispersion") else {}))
    return fit_spec(frame, model, progress=progress)


def model_data(project: Project, model: dict[str, Any]) -> pd.DataFrame:
    """The columns a saved model reads from its dataset, checked against what they were when it was saved
    (:func:`check_data`): a refit on changed data is refused."""
    spec = model.get("spec") or {}
    try:
        frame = catalogue.read_frame(project, model["dataset_id"], spec_columns(spec))
    except (NotFound, KeyError) as exc:
        raise ServiceError(f"The model's dataset or one of its columns is gone ({exc}); run the model again.") \
            from None
    check_data(model, frame, column_types(project, model["dataset_id"], list(frame.columns)))
    return frame


def refit_model(project: Project, model: dict[str, Any], progress=None, frame: pd.DataFrame | None = None):
    """Fit a saved model again on its dataset (a model keeps its spec and result JSON, not the data): the fit in
    memory that profile and bootstrap intervals need. Refused when the dataset has changed since. ``frame``: the
    :func:`model_data` already read."""
    spec = model.get("spec") or {}
    if frame is None:
        frame = model_data(project, model)
    result = fit_form(frame, spec, progress=progress)
    saved = model.get("result") or {}
    if saved.get("n_obs") is not None and result.n_obs != saved["n_obs"]:
        raise ServiceError(f"The model's dataset has changed since it was saved ({result.n_obs:,} rows used now, "
                           f"{saved['n_obs']:,} then); run the model again.")
    return result
