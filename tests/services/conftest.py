"""Fixtures for the services tests: a fresh project per test and a helper that writes small text files."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmmlab.services.project.store import Project


@pytest.fixture
def project(tmp_path: Path):
    with Project.open(tmp_path / "project.duckdb") as p:
        yield p


@pytest.fixture
def write_file(tmp_path: Path):
    """write_file("name.csv", text or bytes) -> Path of the new file in the test's folder."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        else:
            path.write_bytes(content)
        return path

    return write
