"""Source definitions: the ``sources:`` entries of an index file, as typed models.

A source is a folder of documents (``files``), a CSV/Parquet file (``table``) or
a SQL query (``sql``); the two tabular kinds share how rows become documents
(key, text and title templates, metadata columns, grouping, time partitioning).
:data:`SourceConfig` is the union, told apart by ``type``.

This module only describes and validates sources; :mod:`groundwork.sources`
reads them. :mod:`groundwork.config` re-exports every name here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "FILE_SUFFIXES",
    "NAME_PATTERN",
    "ColumnTimePartition",
    "FileSourceConfig",
    "FileTimePartition",
    "SourceConfig",
    "SqlSourceConfig",
    "StrictModel",
    "TableSourceConfig",
    "template_fields",
]

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

FILE_SUFFIXES = (
    ".pdf", ".html", ".htm", ".md", ".markdown", ".docx", ".pptx", ".xlsx", ".eml",
    ".epub", ".odt", ".rst", ".txt", ".text", ".org",
)  # fmt: skip


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo never passes silently); loaded configs are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_DATE_EXAMPLE = r"(?P<date>\d{4}-\d{2}-\d{2})"


class FileTimePartition(StrictModel):
    """How a file source is split in time, so that a run with a data interval hashes only that interval's files.

    ``by: modified`` uses each file's modification time; ``by: path`` a date in its path, found with
    ``pattern`` (a regular expression with a group named ``date``, searched in the path relative to
    the source folder) and read with ``format`` (``strptime``; naive times are UTC). A file whose
    path has no date is read by every run.
    """

    by: Literal["modified", "path"]
    pattern: str | None = Field(default=None, description="by: path - regex with a (?P<date>...) group")
    format: str = Field(default="%Y-%m-%d", description="by: path - strptime format of the date group")

    @model_validator(mode="after")
    def _pattern_for_path(self) -> FileTimePartition:
        if self.by == "path":
            if not self.pattern:
                raise ValueError(f"by: path needs a pattern with a group named date, e.g. {_DATE_EXAMPLE!r}")
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
            if "date" not in compiled.groupindex:
                raise ValueError(f"pattern must have a group named date, e.g. {_DATE_EXAMPLE!r}")
        elif self.pattern is not None:
            raise ValueError("pattern only applies to by: path")
        return self


class ColumnTimePartition(StrictModel):
    """How a table or SQL source is split in time: by a timestamp column (``updated_at``, ...).

    A run with a data interval reads only the rows (or groups) whose timestamp falls in it; a row
    without a timestamp is read only by runs without one (manual runs).
    """

    by: Literal["column"] = "column"
    column: str | None = Field(default=None, description="the timestamp column; default: timestamp_column")


class _TabularFields(StrictModel):
    """How rows become documents; shared by table files and SQL queries."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    key: list[str] = Field(min_length=1, description="column(s) whose values identify a document")
    text: str = Field(min_length=1, description="template over named columns, e.g. '{title}: {body}'")
    title: str | None = Field(default=None, description="template for the document title")
    metadata_columns: list[str] = Field(default_factory=list)
    timestamp_column: str | None = None
    group_by: list[str] | None = Field(
        default=None, description="one document per distinct value of these columns instead of per row"
    )
    language: str | None = Field(default=None, description="ISO 639-3 code, e.g. 'eng'; detected if unset")
    time_partition: ColumnTimePartition | None = Field(
        default=None, description="read only a run's data interval, by a timestamp column"
    )

    @property
    def partition_column(self) -> str | None:
        """The column a windowed run filters on, or None when the source is not time-partitioned."""
        if self.time_partition is None:
            return None
        return self.time_partition.column or self.timestamp_column

    @model_validator(mode="after")
    def _partition_column(self) -> _TabularFields:
        if self.time_partition is not None and not self.partition_column:
            raise ValueError("time_partition needs a column (or a timestamp_column to default to)")
        return self

    @field_validator("key", "group_by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("text", "title")
    @classmethod
    def _template_fields(cls, value: str | None) -> str | None:
        if value is not None and not template_fields(value):
            raise ValueError("a template must name at least one column, e.g. '{body}'")
        return value


class FileSourceConfig(StrictModel):
    """A folder (or glob) of documents partitioned with unstructured."""

    type: Literal["files"]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    path: Path = Field(description="folder to list")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="glob patterns under path")
    exclude: list[str] = Field(default_factory=list)
    pdf_strategy: Literal["fast"] = "fast"
    languages: list[str] | None = Field(default=None, description="ISO 639-3 codes; detected if unset")
    max_file_mb: float = Field(default=200.0, gt=0)
    max_uncompressed_mb: float = Field(
        default=500.0, gt=0, description="zip-based formats (DOCX, PPTX, XLSX, EPUB, ODT): expanded size limit"
    )
    encoding: str | None = Field(default=None, description="force this encoding for text files")
    fallback_encoding: str = Field(
        default="cp1252", description="text files that are neither UTF-8 nor UTF-16/32 are decoded with this"
    )
    time_partition: FileTimePartition | None = Field(
        default=None, description="read only a run's data interval: by modification time or a date in the path"
    )

    @field_validator("encoding", "fallback_encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        import codecs

        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r}") from None
        return value


class TableSourceConfig(_TabularFields):
    """A CSV or Parquet file read with pyarrow: a document per row or per group."""

    type: Literal["table"]
    path: Path
    format: Literal["csv", "parquet"] | None = None

    @model_validator(mode="after")
    def _known_format(self) -> TableSourceConfig:
        if self.format is None and self.path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ValueError(f"cannot tell the format of {self.path}; set format: csv or parquet")
        return self

    @property
    def table_format(self) -> str:
        return self.format or ("csv" if self.path.suffix.lower() == ".csv" else "parquet")


class SqlSourceConfig(_TabularFields):
    """A SQL query through SQLAlchemy: a document per row or per group."""

    type: Literal["sql"]
    query: str = Field(min_length=1)
    url: str | None = Field(default=None, description="SQLAlchemy URL without secrets")
    url_env: str | None = Field(default=None, description="environment variable holding the URL")
    connection_id: str | None = Field(default=None, description="Airflow Connection id (under Airflow)")

    @model_validator(mode="after")
    def _one_url(self) -> SqlSourceConfig:
        if not (self.url or self.url_env or self.connection_id):
            raise ValueError("a sql source needs one of url, url_env or connection_id")
        return self


SourceConfig = Annotated[FileSourceConfig | TableSourceConfig | SqlSourceConfig, Field(discriminator="type")]


_FIELD_RE = re.compile(r"{([^{}!:]+)[^{}]*}")


def template_fields(template: str) -> list[str]:
    """Column names a ``str.format`` template refers to, in order."""
    return [m.strip() for m in _FIELD_RE.findall(template)]
