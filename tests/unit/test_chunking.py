"""Chunking strategies: headings, pages, categories, token windows, and never exceeding the model."""

from __future__ import annotations

import pytest
from unstructured.documents.elements import ElementMetadata, ListItem, NarrativeText, Title

from groundwork.chunking import ChunkDraft, chunk_elements, fit_to_model, heading_paths
from groundwork.config import ChunkingConfig
from tests.conftest import FakeTokenizer


def _doc() -> list:  # type: ignore[type-arg]
    return [
        Title("Guide", metadata=ElementMetadata(page_number=1, category_depth=0)),
        NarrativeText("Intro paragraph about the guide and its purpose.", metadata=ElementMetadata(page_number=1)),
        Title("Install", metadata=ElementMetadata(page_number=2, category_depth=1)),
        NarrativeText("Run the installer and accept the licence.", metadata=ElementMetadata(page_number=2)),
        ListItem("Reboot when asked.", metadata=ElementMetadata(page_number=2)),
        Title("Usage", metadata=ElementMetadata(page_number=3, category_depth=1)),
        NarrativeText("Open the app and pick a project to start.", metadata=ElementMetadata(page_number=3)),
    ]


def test_heading_paths_follow_depth() -> None:
    paths = heading_paths(_doc())
    assert paths[1] == ("Guide",)
    assert paths[3] == ("Guide", "Install")
    assert paths[6] == ("Guide", "Usage")


def test_by_title_keeps_sections_with_their_headings() -> None:
    cfg = ChunkingConfig(strategy="by_title", max_characters=200, new_after_n_chars=150, combine_text_under_n_chars=0)
    drafts = chunk_elements(_doc(), cfg, FakeTokenizer())
    assert [d.heading_path for d in drafts] == [("Guide",), ("Guide", "Install"), ("Guide", "Usage")]
    assert [d.page for d in drafts] == [1, 2, 3]
    assert drafts[1].categories == ("ListItem", "NarrativeText", "Title")
    assert drafts[1].text.startswith("Install")
    assert all(d.token_count == len(d.text.split()) for d in drafts)


def test_basic_fills_chunks_up_to_the_size() -> None:
    cfg = ChunkingConfig(strategy="basic", max_characters=1000, new_after_n_chars=1000)
    drafts = chunk_elements(_doc(), cfg, FakeTokenizer())
    assert len(drafts) == 1
    assert "Reboot when asked." in drafts[0].text


def test_token_windows_overlap_and_cover_every_word() -> None:
    words = [f"w{i}" for i in range(100)]
    elements = [NarrativeText(" ".join(words[:50])), NarrativeText(" ".join(words[50:]))]
    cfg = ChunkingConfig(strategy="tokens", max_tokens=30, overlap_tokens=5)
    drafts = chunk_elements(elements, cfg, FakeTokenizer(max_tokens=64))
    assert all(d.token_count <= 30 for d in drafts)
    seen = [w for d in drafts for w in d.text.split()]
    assert set(seen) == set(words)
    first, second = drafts[0].text.split(), drafts[1].text.split()
    assert first[-5:] == second[:5]


def test_token_windows_never_exceed_the_model_even_if_configured_larger() -> None:
    elements = [NarrativeText(" ".join(f"x{i}" for i in range(500)))]
    cfg = ChunkingConfig(strategy="tokens", max_tokens=400, overlap_tokens=0)
    drafts = chunk_elements(elements, cfg, FakeTokenizer(max_tokens=64))
    assert max(d.token_count for d in drafts) <= 64
    assert sum(d.token_count for d in drafts) == 500


def test_fit_to_model_splits_without_losing_text() -> None:
    long = " ".join(f"word{i}" for i in range(150))
    drafts = fit_to_model([ChunkDraft(text=long, heading_path=("H",), page=4)], FakeTokenizer(max_tokens=64))
    assert len(drafts) == 3
    assert " ".join(d.text for d in drafts) == long
    assert all(d.token_count <= 64 and d.heading_path == ("H",) and d.page == 4 for d in drafts)


@pytest.mark.model
def test_real_tokenizer_limit_holds_for_long_sections() -> None:
    from groundwork.config import EmbeddingConfig
    from groundwork.embedding import load_embedder

    tokenizer = load_embedder(EmbeddingConfig()).tokenizer
    assert tokenizer.max_tokens == 254  # 256 minus [CLS] and [SEP]
    text = " ".join(["Tokenisation of antidisestablishmentarianism-related paragraphs, 42%!"] * 300)
    cfg = ChunkingConfig(strategy="by_title", max_characters=20000, new_after_n_chars=20000)
    drafts = chunk_elements([NarrativeText(text)], cfg, tokenizer)
    assert len(drafts) > 1
    assert max(tokenizer.count([d.text for d in drafts])) <= tokenizer.max_tokens
    assert "".join(d.text for d in drafts).replace(" ", "") == text.replace(" ", "")
