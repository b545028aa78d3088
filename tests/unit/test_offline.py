"""Nothing reaches the network: offline variables, and unstructured's spaCy download replaced in one place."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from groundwork import offline


def test_offline_variables_are_set_without_overriding_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "custom")
    offline.set_offline_env()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["DO_NOT_TRACK"] == "custom"


def test_unstructured_hook_still_exists_upstream() -> None:
    # If unstructured renames these, the patch silently stops working: fail here instead.
    from unstructured.nlp import tokenize

    assert callable(tokenize._load_spacy_model)
    assert hasattr(tokenize._get_nlp, "cache_clear")


def test_partitioning_works_with_the_network_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    offline.patch_unstructured()
    from unstructured.nlp import tokenize
    from unstructured.partition.auto import partition

    assert tokenize._load_spacy_model is offline._offline_spacy_pipeline
    doc = tmp_path / "note.md"
    doc.write_text("# Title\n\nFirst sentence here. Second sentence there.\n\n- a list item\n")
    elements = partition(filename=str(doc))
    assert elements[0].category == "Title"
    assert tokenize.sent_tokenize("One here. Two there.") == ["One here.", "Two there."]
