"""Enrichment: chunk drafts of one document become chunk rows with their payload.

Every chunk carries: its deterministic id, the document's id, source, uri and
title, heading path, first page, element categories, language, character and
token counts, text and document hashes, the source timestamp, its position in
the document, and the static metadata of the index merged with the document's
column metadata. The version is stamped later, when a candidate is assembled.

Pure functions over their inputs; language detection is the only library call.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from groundwork.chunking import ChunkDraft
from groundwork.config import EnrichmentConfig
from groundwork.documents import SourceDocument, chunk_id, sha256_text

__all__ = ["document_language", "enrich"]


def document_language(doc: SourceDocument, elements: Sequence[Any], detect: bool) -> str | None:
    """The document's language: declared, else the elements' majority, else detected."""
    if doc.language:
        return doc.language
    found = Counter(lang for el in elements for lang in (getattr(el.metadata, "languages", None) or [])[:1])
    if found:
        return found.most_common(1)[0][0]
    if not detect:
        return None
    from unstructured.partition.common.lang import detect_languages

    sample = " ".join(el.text for el in elements)[:4000]
    langs = detect_languages(sample) if sample.strip() else None
    return langs[0] if langs else None


def enrich(
    doc: SourceDocument,
    drafts: Sequence[ChunkDraft],
    config: EnrichmentConfig,
    language: str | None,
    start_seq: int = 0,
) -> list[dict[str, Any]]:
    """Chunk rows (the chunk-table columns except ``embedding`` and ``version``)."""
    metadata = json.dumps({**config.metadata, **doc.metadata}, sort_keys=True, ensure_ascii=False, default=str)
    rows = []
    for seq, draft in enumerate(drafts, start=start_seq):
        text_hash = sha256_text(draft.text)
        rows.append(
            {
                "chunk_id": chunk_id(doc.doc_id, seq, text_hash),
                "doc_id": doc.doc_id,
                "source": doc.source,
                "uri": doc.uri,
                "title": doc.title,
                "heading_path": list(draft.heading_path),
                "page": draft.page,
                "element_categories": list(draft.categories),
                "language": language,
                "text": draft.text,
                "char_count": len(draft.text),
                "token_count": draft.token_count,
                "chunk_index": seq,
                "text_hash": text_hash,
                "doc_hash": doc.content_hash,
                "source_modified_at": doc.modified_at,
                "metadata": metadata,
            }
        )
    return rows
