"""Partition one document into unstructured elements.

Files go through ``unstructured.partition.auto`` (``fast`` for PDF: no OCR or
layout models, which are not available offline); a table row becomes one
``NarrativeText`` element with its rendered text. Any failure, or a document
that yields no text at all, raises :class:`~groundwork.errors.DocumentError`
with the error type and a one-line reason; the caller quarantines it and goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from groundwork.documents import SourceDocument
from groundwork.errors import DocumentError
from groundwork.offline import patch_unstructured

__all__ = ["partition_document"]

log = logging.getLogger(__name__)


def partition_document(
    doc: SourceDocument, pdf_strategy: str = "fast", languages: list[str] | None = None
) -> list[Any]:
    """Elements of ``doc`` that carry text, in reading order."""
    patch_unstructured()
    if doc.kind == "row":
        from unstructured.documents.elements import ElementMetadata, NarrativeText

        text = (doc.text or "").strip()
        if not text:
            raise DocumentError(doc.uri, "the row rendered to empty text", "EmptyText")
        return [NarrativeText(text=text, metadata=ElementMetadata(languages=[doc.language] if doc.language else None))]
    if doc.path is None:
        raise DocumentError(doc.uri, "file document without a path", "InvalidDocument")
    try:
        from unstructured.partition.auto import partition

        elements = partition(filename=doc.path, strategy=pdf_strategy, languages=languages)
    except Exception as exc:
        raise DocumentError(doc.uri, _one_line(exc), type(exc).__name__) from exc
    with_text = [e for e in elements if (getattr(e, "text", "") or "").strip()]
    if not with_text:
        raise DocumentError(doc.uri, "no text could be extracted (empty, scanned or encrypted?)", "NoText")
    return with_text


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]
