"""Chunking strategies: elements of one document in, chunk drafts out.

* ``by_title`` and ``basic``: unstructured's chunkers with the index's size,
  overlap and combine parameters (sizes in characters);
* ``tokens``: fixed windows of ``max_tokens`` with ``overlap_tokens``, counted
  with the embedding model's own tokenizer, cut at token offsets so the text is
  the original text, not a decoding.

Whatever the strategy, :func:`fit_to_model` then splits any chunk longer than
the model's sequence length on token boundaries, so no text is ever truncated
silently by the model. Every draft keeps its heading path, first page and the
categories of the elements it came from.

Pure functions: no I/O; the tokenizer is injected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from groundwork.config import ChunkingConfig
from groundwork.embedding import TokenCounter
from groundwork.errors import ChunkingError

__all__ = ["ChunkDraft", "chunk_elements", "fit_to_model", "heading_paths"]


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before ids, metadata and vectors are attached."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    categories: tuple[str, ...] = ()
    token_count: int = 0


def heading_paths(elements: Sequence[Any]) -> list[tuple[str, ...]]:
    """The titles above each element (a title's own path ends with itself)."""
    stack: list[str] = []
    paths: list[tuple[str, ...]] = []
    for el in elements:
        if getattr(el, "category", "") == "Title":
            depth = getattr(el.metadata, "category_depth", None) or 0
            stack = [*stack[:depth], el.text.strip()[:200]]
        paths.append(tuple(stack))
    return paths


def chunk_elements(elements: Sequence[Any], config: ChunkingConfig, tokenizer: TokenCounter) -> list[ChunkDraft]:
    """Chunk one document's elements with the configured strategy, then fit to the model."""
    if not elements:
        return []
    if config.strategy == "tokens":
        drafts = _token_windows(elements, config, tokenizer)
    else:
        drafts = _unstructured_chunks(elements, config)
    return fit_to_model(drafts, tokenizer)


def _unstructured_chunks(elements: Sequence[Any], config: ChunkingConfig) -> list[ChunkDraft]:
    paths = {id(el): p for el, p in zip(elements, heading_paths(elements), strict=True)}
    by_element_id = {el.id: paths[id(el)] for el in elements}
    common: dict[str, Any] = {
        "max_characters": config.max_characters,
        "new_after_n_chars": config.new_after_n_chars,
        "overlap": config.overlap,
        "overlap_all": config.overlap_all,
        "include_orig_elements": True,
    }
    if config.strategy == "by_title":
        from unstructured.chunking.title import chunk_by_title

        chunks = chunk_by_title(
            list(elements),
            combine_text_under_n_chars=config.combine_text_under_n_chars,
            multipage_sections=config.multipage_sections,
            **common,
        )
    else:
        from unstructured.chunking.basic import chunk_elements as basic_chunks

        chunks = basic_chunks(list(elements), **common)
    drafts = []
    for chunk in chunks:
        text = (chunk.text or "").strip()
        if not text:
            continue
        origin = chunk.metadata.orig_elements or []
        first = origin[0] if origin else None
        drafts.append(
            ChunkDraft(
                text=text,
                heading_path=by_element_id.get(first.id, ()) if first is not None else (),
                page=chunk.metadata.page_number,
                categories=tuple(sorted({o.category for o in origin})) or (chunk.category,),
            )
        )
    return drafts


def _token_windows(elements: Sequence[Any], config: ChunkingConfig, tokenizer: TokenCounter) -> list[ChunkDraft]:
    # Join the elements into one text, remembering where each one starts so a
    # window can report the headings, page and categories it covers.
    parts: list[str] = []
    starts: list[int] = []
    offset = 0
    for el in elements:
        starts.append(offset)
        parts.append(el.text)
        offset += len(el.text) + 2
    full = "\n\n".join(parts)
    paths = heading_paths(elements)
    spans = tokenizer.spans(full)
    size = min(config.max_tokens, tokenizer.max_tokens)
    step = size - min(config.overlap_tokens, size - 1)
    drafts = []
    for first in range(0, len(spans), step):
        window = spans[first : first + size]
        lo, hi = window[0][0], window[-1][1]
        covered = [i for i, s in enumerate(starts) if s < hi and s + len(parts[i]) > lo]
        idx = covered[0] if covered else 0
        text = full[lo:hi].strip()
        if text:
            drafts.append(
                ChunkDraft(
                    text=text,
                    heading_path=paths[idx],
                    page=getattr(elements[idx].metadata, "page_number", None),
                    categories=tuple(sorted({elements[i].category for i in covered})),
                )
            )
        if first + size >= len(spans):
            break
    return drafts


def fit_to_model(drafts: Sequence[ChunkDraft], tokenizer: TokenCounter) -> list[ChunkDraft]:
    """Split drafts longer than the model's limit on token boundaries; record token counts."""
    limit = tokenizer.max_tokens
    counts = tokenizer.count([d.text for d in drafts])
    fitted: list[ChunkDraft] = []
    for draft, count in zip(drafts, counts, strict=True):
        if count <= limit:
            fitted.append(replace(draft, token_count=count))
        else:
            fitted.extend(_split(draft, tokenizer, limit))
    return fitted


def _split(draft: ChunkDraft, tokenizer: TokenCounter, limit: int) -> list[ChunkDraft]:
    """Cut an over-long draft into consecutive pieces that each fit ``limit`` tokens."""
    spans = tokenizer.spans(draft.text)
    pieces: list[ChunkDraft] = []
    start = 0
    while start < len(spans):
        size = min(limit, len(spans) - start)
        while True:
            # Re-tokenising a slice can add a token at its edges; shrink until it fits.
            text = draft.text[spans[start][0] : spans[start + size - 1][1]].strip()
            count = tokenizer.count([text])[0]
            if count <= limit:
                break
            size -= max(1, (count - limit) + 1)
            if size <= 0:
                raise ChunkingError(f"cannot fit text into {limit} tokens near: {draft.text[:80]!r}")
        if text:
            pieces.append(replace(draft, text=text, token_count=count))
        start += size
    return pieces
