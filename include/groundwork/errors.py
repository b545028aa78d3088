"""The exceptions groundwork raises, as one small hierarchy.

::

    GroundworkError                 anything groundwork itself reports
    ├── ConfigError                 an index file or a setting is invalid (names file, field, allowed values)
    ├── SourceError                 a source cannot be listed or read as a whole (unreachable, empty glob root)
    ├── DeleteBreakerTripped        a run would delete more of the index than allowed; force it with a reason
    ├── RebaseConflict              the live version changed config while a run was in flight; re-run it
    ├── DocumentError               one document cannot be parsed; the run records it and goes on
    ├── ChunkingError               a chunk cannot be made to fit the model (never truncated silently)
    ├── PublishError                the vector store refused or lost points; the alias was not moved
    ├── ValidationFailed            the quality gate rejected a candidate; nothing was published
    ├── EvaluationRegression        the candidate retrieves worse than the live version on golden queries
    └── NotFoundError               an index, version or run that does not exist

Every message says what went wrong, where, and what to do about it. Nothing here
knows about Airflow: DAG tasks let these propagate so the task log shows them.
"""

from __future__ import annotations

__all__ = [
    "ChunkingError",
    "ConfigError",
    "DeleteBreakerTripped",
    "RebaseConflict",
    "DocumentError",
    "EvaluationRegression",
    "GroundworkError",
    "NotFoundError",
    "PublishError",
    "SourceError",
    "ValidationFailed",
]


class GroundworkError(Exception):
    """Base class of every error groundwork raises on purpose."""


class ConfigError(GroundworkError):
    """An index definition or setting is invalid."""


class SourceError(GroundworkError):
    """A whole source cannot be listed or read; the run stops before publishing."""


class DeleteBreakerTripped(GroundworkError):
    """A run would delete more than the configured share of the index's documents."""


class RebaseConflict(GroundworkError):
    """Another run published a version with another config or model while this one was in flight."""


class DocumentError(GroundworkError):
    """One document cannot be parsed. Recorded with its reason; the run goes on."""

    def __init__(self, uri: str, reason: str, error_type: str = "DocumentError") -> None:
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason
        self.error_type = error_type


class ChunkingError(GroundworkError):
    """A chunk cannot be made to fit the embedding model's sequence length."""


class PublishError(GroundworkError):
    """Publishing a version failed; readers still see the previous live version."""


class ValidationFailed(GroundworkError):
    """The quality gate rejected a candidate version; readers keep the live version."""


class EvaluationRegression(GroundworkError):
    """The promotion gate: a candidate's retrieval metrics dropped past the tolerance."""


class NotFoundError(GroundworkError):
    """An index, version or run that does not exist."""
