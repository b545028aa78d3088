"""Keep groundwork off the network at run time, in one place.

What it does:

* sets the offline and no-telemetry variables of the libraries we use
  (Hugging Face, transformers, unstructured's Scarf notice, DVC analytics), unless
  the user has already set them;
* replaces unstructured's first-use download of the spaCy model
  ``en_core_web_sm`` (fetched from GitHub, which these machines cannot reach)
  with a blank English pipeline plus a rule-based sentencizer. Partitioning only
  needs sentence boundaries and word tokens; without the tagger some paragraphs
  come out as ``UncategorizedText`` instead of ``NarrativeText``, which chunking
  ignores. If the real model is installed it is used instead.

What it does not do: install anything, or hide a missing package. The test
``tests/unit/test_offline.py`` fails if unstructured moves the hook we patch.
"""

from __future__ import annotations

import os
from typing import Any

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

_SPACY_MODEL = "en_core_web_sm"
_patched = False


def set_offline_env() -> None:
    """Set the offline variables that are not already set (a user's choice wins)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def _offline_spacy_pipeline() -> Any:
    """The real ``en_core_web_sm`` when installed, else a blank English sentencizer."""
    import spacy

    try:
        return spacy.load(_SPACY_MODEL, exclude=["ner", "lemmatizer", "attribute_ruler"])
    except OSError:
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp


def patch_unstructured() -> None:
    """Point unstructured's spaCy loader at an offline pipeline (idempotent)."""
    global _patched
    if _patched:
        return
    set_offline_env()
    from unstructured.nlp import tokenize

    if not hasattr(tokenize, "_load_spacy_model") or not hasattr(tokenize, "_get_nlp"):
        raise RuntimeError(
            "unstructured.nlp.tokenize no longer has _load_spacy_model/_get_nlp: "
            "groundwork.offline must be updated for this unstructured release"
        )
    tokenize._load_spacy_model = _offline_spacy_pipeline
    tokenize._get_nlp.cache_clear()
    _patched = True
