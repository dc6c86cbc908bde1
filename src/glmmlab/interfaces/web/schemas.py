"""Request and response bodies of the JSON API (they document it in ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

Scale = Literal["nominal", "ordinal", "interval", "ratio"]
DType = Literal["boolean", "int64", "float64", "date", "datetime", "string"]
Action = Literal["exclude", "as_is", "dummy_drop", "dummy_keep"]


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in words a person can act on.")


class TokenBody(BaseModel):
    csrf_token: str = Field(description="Send it back as the X-CSRF-Token header on POST, PUT, PATCH and DELETE.")


class ProjectInfo(BaseModel):
    name: Optional[str] = Field(description="The open project's name inside the projects directory.")
    path: Optional[str]
    damaged: Optional[str] = Field(None, description="When the project file is damaged: what, and what can be saved.")
    projects_dir: str
    max_upload_bytes: int


class ProjectEntry(BaseModel):
    name: str
    size_bytes: int
    modified: str
    current: bool


class NewProjectBody(BaseModel):
    name: str = Field(description="A name such as 'study' or 'study.duckdb', or a path inside the projects "
                                  "directory. '..' and paths outside it are refused.", examples=["study"])
    samples: bool = Field(False, description="Fill the new project with glmmlab's sample datasets.")


class OpenProjectBody(BaseModel):
    name: str = Field(description="The name of an existing project in the projects directory.", examples=["default"])


class ColumnOut(BaseModel):
    name: str
    dtype: str
    scale: str


class DatasetOut(BaseModel):
    id: Any
    name: str
    n_rows: int
    columns: list[ColumnOut]
    parent_id: Any = None
    operation: Any = None
    read_only: bool = False
    created_at: Any = None

    model_config = {"extra": "allow"}


class RowsOut(BaseModel):
    dataset_id: Any
    columns: list[ColumnOut]
    rows: list[list[Any]]
    total: int
    offset: int
    limit: int


class RenameBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class ColumnChange(BaseModel):
    column: str = Field(description="The column's current name.")
    dtype: Optional[DType] = Field(None, description="New type; leave out to keep the type.")
    scale: Optional[Scale] = Field(None, description="New measurement scale; leave out to keep it.")
    invalid: Literal["refuse", "missing"] = Field(
        "refuse", description="With a new dtype: 'refuse' the change when a value does not fit (the error then "
                              "carries invalid_count), or turn such values into 'missing'.")


class Dependents(BaseModel):
    datasets: list[dict[str, Any]]
    models: list[dict[str, Any]]


class DeletedOut(BaseModel):
    deleted: Dependents | dict[str, Any]


class DummyColumnSpec(BaseModel):
    column: str
    scale: Optional[Scale] = None
    action: Action = "as_is"
    reference: Optional[Any] = Field(None, description="The reference category; default: the first value in "
                                                       "alphabetical order.")


class DummyBody(BaseModel):
    dataset_id: Any
    spec: list[DummyColumnSpec]
    name: Optional[str] = Field(None, description="Name of the derived dataset (only for creating).")


class JobOut(BaseModel):
    id: str
    kind: str
    label: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str
    fraction: float
    error: Optional[str]
    result: Optional[dict[str, Any]]
    elapsed_seconds: float
