"""The sample datasets: reproducible, realistic, created once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from glmmlab.services.project import catalogue, importing, samples


def test_samples_are_created_once_on_a_new_project(project):
    created = samples.create_sample_datasets(project)
    assert [d.name for d in created] == ["school scores", "clinic recovery", "regional incidents", "hospital costs"]
    assert samples.create_sample_datasets(project) == []
    assert len(catalogue.list_datasets(project)) == 4
    for info in created:
        assert 300 <= info.n_rows <= 5000
        group = info.columns[0]
        assert group.dtype == "string" and group.categorical
        assert any(c.dtype == "string" and c is not group for c in info.columns), "a column to dummy-code"
        suggested = info.operation["suggested"]
        frame = catalogue.read_frame(project, info.id)
        assert frame[suggested["response"]].notna().all()
        assert all(info.column(x).numeric for x in suggested["fixed"] + [suggested["response"]])


def test_samples_are_not_added_to_a_project_that_has_data(project):
    importing.import_dataset(project, b"a\n1\n", "mine", fmt="csv")
    assert samples.create_sample_datasets(project) == []
    assert [d.name for d in catalogue.list_datasets(project)] == ["mine"]


def test_samples_are_reproducible_and_fit_their_families():
    first, second = samples.sample_frames(), samples.sample_frames()
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])
    scores = first["school scores"]
    assert scores["school"].nunique() == 40
    # study hours differ between schools (the spec's example) and scores rise with hours
    assert scores.groupby("school")["study_hours"].mean().std() > 1.0
    assert np.corrcoef(scores["study_hours"], scores["score"])[0, 1] > 0.3
    assert set(first["clinic recovery"]["recovered"].unique()) == {0, 1}
    incidents = first["regional incidents"]["incidents"]
    assert (incidents >= 0).all() and incidents.dtype == np.int64
    assert (first["hospital costs"]["cost"] > 0).all()
