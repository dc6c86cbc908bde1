"""What depends on a dataset, and deleting a dataset with everything that depends on it.

Datasets derived from a dataset (and from those), the models fitted on any of them and those models' diagnostics
datasets: :func:`dependents` lists them, :func:`delete_dataset` deletes them all in one transaction.
"""

from __future__ import annotations

from typing import Any

from glmmlab.services.project.catalogue import _dataset_id, _load_info
from glmmlab.services.project.editing import _undo_tables
from glmmlab.services.project.store import Project, data_table


def _closure(cur, dataset_id: int) -> tuple[list[tuple], list[tuple]]:
    """Datasets (id, name, parent_id) and models (id, name, dataset_id) depending on ``dataset_id``, in order found."""
    datasets = cur.execute("SELECT id, name, parent_id FROM datasets ORDER BY id").fetchall()
    models = cur.execute("SELECT id, name, dataset_id, diagnostics_dataset_id FROM models ORDER BY id").fetchall()
    children: dict[int, list[tuple]] = {}
    for d in datasets:
        if d[2] is not None:
            children.setdefault(int(d[2]), []).append(d)
    by_id = {int(d[0]): d for d in datasets}
    fitted_on: dict[int, list[tuple]] = {}
    for m in models:
        fitted_on.setdefault(int(m[2]), []).append(m)
    seen_d, seen_m = {dataset_id}, set()
    found_d, found_m = [], []
    queue = [dataset_id]
    while queue:
        current = queue.pop(0)
        for child in children.get(current, []):
            if int(child[0]) not in seen_d:
                seen_d.add(int(child[0]))
                found_d.append(child)
                queue.append(int(child[0]))
        for model in fitted_on.get(current, []):
            if int(model[0]) in seen_m:
                continue
            seen_m.add(int(model[0]))
            found_m.append(model[:3])
            diag = model[3]
            if diag is not None and int(diag) not in seen_d and int(diag) in by_id:
                seen_d.add(int(diag))
                found_d.append(by_id[int(diag)])
                queue.append(int(diag))
    return found_d, found_m


def _lineage_dict(datasets: list[tuple], models: list[tuple]) -> dict[str, list[dict[str, Any]]]:
    return {"datasets": [{"id": int(d[0]), "name": d[1], "parent_id": None if d[2] is None else int(d[2])}
                         for d in datasets],
            "models": [{"id": int(m[0]), "name": m[1], "dataset_id": int(m[2])} for m in models]}


def dependents(project: Project, dataset_id: int) -> dict[str, list[dict[str, Any]]]:
    """What depends on the dataset, transitively: ``{"datasets": [...], "models": [...]}``.

    Datasets derived from it (and from those, and so on), models fitted on any of them, and the diagnostics
    datasets of those models (with their own dependents). Each entry is ``{"id", "name"}`` (datasets also
    ``"parent_id"``; models also ``"dataset_id"``). The dataset itself is not listed.
    """
    dataset_id = _dataset_id(dataset_id)
    with project.read() as cur:
        _load_info(cur, dataset_id)
        return _lineage_dict(*_closure(cur, dataset_id))


def delete_dataset(project: Project, dataset_id: int) -> dict[str, list[dict[str, Any]]]:
    """Delete the dataset and everything in :func:`dependents`, in one transaction.

    Returns what was deleted, in the shape of :func:`dependents` with the dataset itself first in ``datasets``.
    A model whose diagnostics dataset is deleted (but not the model's own data) keeps its results and loses the
    link to the diagnostics.
    """
    dataset_id = _dataset_id(dataset_id)
    with project.write() as cur:
        info = _load_info(cur, dataset_id)
        found_d, found_m = _closure(cur, dataset_id)
        doomed_d = [(info.id, info.name, info.parent_id)] + found_d
        ids = [int(d[0]) for d in doomed_d]
        model_ids = [int(m[0]) for m in found_m]
        for i in ids:
            cur.execute(f"DROP TABLE IF EXISTS {data_table(i)}")
            for undo in _undo_tables(i):
                cur.execute(f"DROP TABLE IF EXISTS {undo}")
        cur.execute("DELETE FROM columns WHERE dataset_id IN (SELECT unnest(?::BIGINT[]))", [ids])
        cur.execute("DELETE FROM datasets WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids])
        if model_ids:
            cur.execute("DELETE FROM models WHERE id IN (SELECT unnest(?::BIGINT[]))", [model_ids])
        cur.execute("UPDATE models SET diagnostics_dataset_id = NULL "
                    "WHERE diagnostics_dataset_id IN (SELECT unnest(?::BIGINT[]))", [ids])
        return _lineage_dict(doomed_d, found_m)
