"""Partition one document into unstructured elements, segment by segment.

Files go through ``unstructured.partition.auto`` (``fast`` for PDF: no OCR or
layout models, which are not available offline) after the checks of
:mod:`groundwork.preflight`. Plain text and Markdown are decoded by groundwork
(see :func:`~groundwork.preflight.decode_text`) and, when large, partitioned in
segments of about ``SEGMENT_CHARS`` cut at blank lines, so a 50 MB text file
costs a segment's memory, not the file's. A table row becomes one
``NarrativeText`` element.

Any failure, or a document that yields no text at all, raises
:class:`~groundwork.errors.DocumentError` with the error type and a one-line
reason; the caller quarantines the document and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from groundwork.config import FileSourceConfig
from groundwork.documents import SourceDocument
from groundwork.errors import DocumentError
from groundwork.offline import patch_unstructured
from groundwork.preflight import check_file, detect_encoding, iter_text

__all__ = ["SEGMENT_CHARS", "partition_document"]

log = logging.getLogger(__name__)

SEGMENT_CHARS = 1_000_000
_TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown"}


def partition_document(doc: SourceDocument, source: FileSourceConfig | None = None) -> Iterator[list[Any]]:
    """Elements of ``doc`` that carry text, one list per segment, in reading order."""
    patch_unstructured()
    if doc.kind == "row":
        yield _row_elements(doc)
        return
    if doc.path is None:
        raise DocumentError(doc.uri, "file document without a path", "InvalidDocument")
    cfg = source or FileSourceConfig(type="files", name=doc.source, path=Path(doc.path).parent)
    path = Path(doc.path)
    check_file(path, int(cfg.max_uncompressed_mb * 1024 * 1024))
    produced = False
    try:
        if path.suffix.lower() in _TEXT_SUFFIXES:
            segments = _text_segments(path, cfg)
        else:
            segments = iter([_partition_file(path, cfg)])
        for elements in segments:
            with_text = [e for e in elements if (getattr(e, "text", "") or "").strip()]
            if with_text:
                produced = True
                yield with_text
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(doc.uri, _one_line(exc), type(exc).__name__) from exc
    if not produced:
        raise DocumentError(doc.uri, "no text could be extracted (empty, scanned, or only images?)", "NoText")


def _row_elements(doc: SourceDocument) -> list[Any]:
    from unstructured.documents.elements import ElementMetadata, NarrativeText

    text = (doc.text or "").strip()
    if not text:
        raise DocumentError(doc.uri, "the row rendered to empty text", "EmptyText")
    return [NarrativeText(text=text, metadata=ElementMetadata(languages=[doc.language] if doc.language else None))]


def _partition_file(path: Path, cfg: FileSourceConfig) -> list[Any]:
    from unstructured.partition.auto import partition

    return list(partition(filename=str(path), strategy=cfg.pdf_strategy, languages=cfg.languages))


def _text_segments(path: Path, cfg: FileSourceConfig) -> Iterator[list[Any]]:
    """Decode a text/Markdown file and partition it in blank-line-aligned segments."""
    from unstructured.partition.md import partition_md
    from unstructured.partition.text import partition_text

    is_markdown = path.suffix.lower() in (".md", ".markdown")
    partition_text_like: Callable[..., list[Any]] = partition_md if is_markdown else partition_text

    encoding = detect_encoding(path, cfg.fallback_encoding, cfg.encoding)
    pending = ""
    blocks = iter_text(path, encoding)
    exhausted = False
    while not exhausted or pending:
        # Fill up to a segment, then cut at the last blank line of its second half.
        while not exhausted and len(pending) < SEGMENT_CHARS:
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                pending += block
        end = len(pending)
        if not exhausted and end > SEGMENT_CHARS:
            cut = pending.rfind("\n\n", SEGMENT_CHARS // 2, SEGMENT_CHARS)
            end = cut + 2 if cut != -1 else SEGMENT_CHARS
        piece, pending = pending[:end], pending[end:]
        if piece.strip():
            elements = partition_text_like(text=piece, languages=cfg.languages)
            for el in elements:
                el.metadata.filename = path.name
            yield elements


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]
