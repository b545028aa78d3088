"""Index files: loading, path resolution, error messages, fingerprints, folders of indexes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from groundwork.config import (
    ChunkingConfig,
    FileSourceConfig,
    IndexConfig,
    SqlSourceConfig,
    TableSourceConfig,
    discover_index_files,
    load_index,
    load_indexes,
    parse_index,
)
from groundwork.errors import ConfigError, GroundworkError
from groundwork.source_config import template_fields
from groundwork.sources import discover

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INDEX = REPO_ROOT / "include" / "indexes" / "groundwork_docs.yaml"

VALID = """
    name: demo
    description: a test index
    schedule: "0 3 * * *"
    tags: [test, unit]
    sources:
      - name: docs
        type: files
        path: docs
        include: ["**/*.md", "**/*.txt"]
        exclude: ["drafts/*"]
        languages: [eng]
        max_file_mb: 5
      - name: glossary
        type: table
        path: ../data/glossary.csv
        key: term
        title: "{term}"
        text: "{term}: {definition}"
        metadata_columns: [category]
        timestamp_column: updated_at
        language: eng
      - name: tickets
        type: sql
        query: select id, subject, body from tickets
        url_env: TICKETS_DB_URL
        key: [id, subject]
        text: "{subject}\\n{body}"
        group_by: subject
    chunking:
      strategy: basic
      max_characters: 600
      new_after_n_chars: 500
      overlap: 50
    enrichment:
      metadata:
        project: groundwork
        tier: 2
      detect_language: false
    embedding:
      model: all-MiniLM-L6-v2
      batch_size: 16
      normalize: true
    qdrant:
      path: qdrant_data
    processing:
      batch_size: 10
      max_batches: 20
"""


def write_index(folder: Path, body: str, file_name: str = "demo.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def minimal(name: str = "demo", extra: str = "", source: str = "") -> str:
    """A small valid index body; ``extra`` is appended at the top level, ``source`` replaces the source list."""
    sources = (
        source
        or """
    sources:
      - name: docs
        type: files
        path: docs
    """
    )
    return textwrap.dedent(f"name: {name}\n") + textwrap.dedent(sources) + textwrap.dedent(extra)


def load_error(tmp_path: Path, body: str, file_name: str = "demo.yaml") -> tuple[Path, str]:
    folder = tmp_path / "indexes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_index(path)
    return path.resolve(), str(info.value)


# --- loading a valid file -------------------------------------------------------------------------------


def test_loads_every_section_of_a_valid_file(tmp_path: Path) -> None:
    path = write_index(tmp_path / "indexes", VALID)
    cfg = load_index(path)

    assert isinstance(cfg, IndexConfig)
    assert cfg.name == "demo"
    assert cfg.description == "a test index"
    assert cfg.schedule == "0 3 * * *"
    assert cfg.tags == ["test", "unit"]
    assert cfg.source_file == path.resolve()
    assert cfg.source_names == ["docs", "glossary", "tickets"]

    docs, glossary, tickets = cfg.sources
    assert isinstance(docs, FileSourceConfig)
    assert docs.include == ["**/*.md", "**/*.txt"]
    assert docs.exclude == ["drafts/*"]
    assert docs.languages == ["eng"]
    assert docs.max_file_mb == 5
    assert isinstance(glossary, TableSourceConfig)
    assert glossary.key == ["term"]  # a single key is accepted as a string
    assert glossary.table_format == "csv"
    assert glossary.metadata_columns == ["category"]
    assert glossary.timestamp_column == "updated_at"
    assert glossary.language == "eng"
    assert isinstance(tickets, SqlSourceConfig)
    assert tickets.key == ["id", "subject"]
    assert tickets.group_by == ["subject"]
    assert tickets.url_env == "TICKETS_DB_URL"
    assert tickets.url is None and tickets.connection_id is None
    assert cfg.source("tickets") is tickets

    assert cfg.chunking.strategy == "basic"
    assert (cfg.chunking.max_characters, cfg.chunking.new_after_n_chars, cfg.chunking.overlap) == (600, 500, 50)
    assert cfg.enrichment.metadata == {"project": "groundwork", "tier": 2}
    assert cfg.enrichment.detect_language is False
    assert cfg.embedding.batch_size == 16
    assert cfg.processing.batch_size == 10 and cfg.processing.max_batches == 20


def test_defaults_for_a_minimal_file(tmp_path: Path) -> None:
    cfg = load_index(write_index(tmp_path / "indexes", minimal()))

    assert cfg.schedule == "@daily"
    assert cfg.chunking == ChunkingConfig()
    assert cfg.chunking.strategy == "by_title"
    assert cfg.embedding.model == "all-MiniLM-L6-v2"
    assert cfg.embedding.device == "cpu"
    assert cfg.qdrant.path is None and cfg.qdrant.url is None and cfg.qdrant.location is None
    assert cfg.qdrant.connection_id == "qdrant_default"
    source = cfg.sources[0]
    assert isinstance(source, FileSourceConfig)
    assert source.include == ["**/*"] and source.exclude == []


def test_yml_extension_and_null_schedule(tmp_path: Path) -> None:
    cfg = load_index(write_index(tmp_path, minimal(extra="schedule: null\n"), file_name="demo.yml"))
    assert cfg.name == "demo"
    assert cfg.schedule is None


def test_models_are_frozen(tmp_path: Path) -> None:
    cfg = load_index(write_index(tmp_path, minimal()))
    with pytest.raises(ValueError, match="frozen"):
        cfg.name = "other"  # type: ignore[misc]


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project" / "indexes"
    path = write_index(folder, VALID)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter

    cfg = load_index(path)

    docs, glossary, _ = cfg.sources
    assert isinstance(docs, FileSourceConfig) and isinstance(glossary, TableSourceConfig)
    assert docs.path == (folder / "docs").resolve()
    assert glossary.path == (tmp_path / "project" / "data" / "glossary.csv").resolve()
    assert ".." not in glossary.path.parts
    assert cfg.qdrant.path == (folder / "qdrant_data").resolve()


def test_relative_index_path_and_absolute_source_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = tmp_path / "absolute docs"
    body = minimal(
        source=f"""
    sources:
      - name: docs
        type: files
        path: "{absolute}"
    """
    )
    write_index(tmp_path / "indexes", body)
    monkeypatch.chdir(tmp_path)

    cfg = load_index("indexes/demo.yaml")  # a relative path to the index file itself

    assert cfg.source_file == (tmp_path / "indexes" / "demo.yaml").resolve()
    source = cfg.sources[0]
    assert isinstance(source, FileSourceConfig)
    assert source.path == absolute


def test_parse_index_without_a_file_leaves_paths_alone() -> None:
    cfg = parse_index({"name": "demo", "sources": [{"name": "docs", "type": "files", "path": "docs"}]})
    assert cfg.source_file is None
    assert cfg.sources[0].path == Path("docs")  # type: ignore[union-attr]


# --- errors ---------------------------------------------------------------------------------------------


def test_bad_enum_value_names_file_field_and_allowed_values(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, minimal(extra="chunking:\n  strategy: sentences\n"))
    assert str(path) in message
    assert "chunking.strategy" in message
    assert "'by_title', 'basic' or 'tokens'" in message


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    body = minimal(extra="chunking:\n  strategy: nope\nembedding:\n  batch_size: 0\nqdrant:\n  distance: manhattan\n")
    _, message = load_error(tmp_path, body)
    assert "chunking.strategy" in message
    assert "embedding.batch_size" in message and "greater than 0" in message
    assert "qdrant.distance" in message and "'cosine', 'dot' or 'euclid'" in message


def test_unknown_top_level_field_lists_the_allowed_fields(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, minimal(extra="chunkign:\n  strategy: basic\n"))
    assert str(path) in message
    assert "chunkign" in message and "Extra inputs are not permitted" in message
    allowed = message.split("allowed fields here:")[1].split("\n")[0]
    for field in ("chunking", "description", "embedding", "enrichment", "name", "processing", "qdrant", "sources"):
        assert field in allowed
    assert "source_file" not in allowed  # internal, not something to write in a file


def test_unknown_nested_field_lists_that_sections_fields(tmp_path: Path) -> None:
    _, message = load_error(tmp_path, minimal(extra="chunking:\n  max_chars: 500\n"))
    assert "chunking.max_chars" in message
    allowed = message.split("allowed fields here:")[1].split("\n")[0]
    assert "max_characters" in allowed and "overlap" in allowed and "strategy" in allowed
    assert "sources" not in allowed


def test_unknown_field_in_a_source_lists_that_source_types_fields(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - name: glossary
        type: table
        path: g.csv
        key: term
        text: "{term}"
        metadata: [category]
    """
    )
    _, message = load_error(tmp_path, body)
    assert "sources.0.table.metadata" in message
    allowed = message.split("allowed fields here:")[1].split("\n")[0]
    assert "metadata_columns" in allowed and "timestamp_column" in allowed and "group_by" in allowed
    assert "see the documentation" not in allowed


def test_file_name_must_match_index_name(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, minimal(name="other"), file_name="demo.yaml")
    assert str(path) in message
    assert "'other'" in message and "'demo'" in message
    assert "must match the file name" in message


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, "name: demo\nsources: [unclosed\n")
    assert str(path) in message
    assert "not valid YAML" in message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, "- just\n- a list\n")
    assert str(path) in message
    assert "expected a mapping" in message and "list" in message


def test_empty_file(tmp_path: Path) -> None:
    _, message = load_error(tmp_path, "")
    assert "expected a mapping" in message


def test_missing_index_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="index file not found") as info:
        load_index(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_duplicate_source_names(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - {name: docs, type: files, path: a}
      - {name: notes, type: files, path: b}
      - {name: docs, type: files, path: c}
    """
    )
    path, message = load_error(tmp_path, body)
    assert str(path) in message
    assert "sources" in message
    assert "source names must be unique; repeated: docs" in message


def test_sql_source_without_any_url(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - name: tickets
        type: sql
        query: select id, body from tickets
        key: id
        text: "{body}"
    """
    )
    path, message = load_error(tmp_path, body)
    assert str(path) in message
    assert "sources.0.sql" in message
    assert "needs one of url, url_env or connection_id" in message


@pytest.mark.parametrize("overlap", [1000, 1500])
def test_overlap_must_be_smaller_than_max_characters(tmp_path: Path, overlap: int) -> None:
    body = minimal(extra=f"chunking:\n  max_characters: 1000\n  overlap: {overlap}\n")
    path, message = load_error(tmp_path, body)
    assert str(path) in message
    assert "chunking" in message
    assert "overlap must be smaller than max_characters" in message


def test_overlap_just_below_max_characters_is_fine(tmp_path: Path) -> None:
    cfg = load_index(write_index(tmp_path, minimal(extra="chunking:\n  max_characters: 1000\n  overlap: 999\n")))
    assert cfg.chunking.overlap == 999


def test_other_chunking_consistency_rules() -> None:
    with pytest.raises(ValueError, match="overlap_tokens must be smaller than max_tokens"):
        ChunkingConfig(max_tokens=100, overlap_tokens=100)
    with pytest.raises(ValueError, match="new_after_n_chars must not exceed max_characters"):
        ChunkingConfig(max_characters=500, new_after_n_chars=600)


def test_unknown_source_type_lists_the_types(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - {name: docs, type: ftp, path: a}
    """
    )
    _, message = load_error(tmp_path, body)
    assert "sources.0" in message
    assert "'files', 'table', 'sql'" in message


def test_bad_source_name(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - {name: My Docs, type: files, path: a}
    """
    )
    _, message = load_error(tmp_path, body)
    assert "sources.0.files.name" in message
    assert "[a-z][a-z0-9_]" in message


def test_table_source_whose_format_cannot_be_told(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - {name: rows, type: table, path: rows.txt, key: id, text: "{body}"}
    """
    )
    _, message = load_error(tmp_path, body)
    assert "sources.0.table" in message
    assert "set format: csv or parquet" in message

    explicit = minimal(
        source="""
    sources:
      - {name: rows, type: table, path: rows.txt, format: csv, key: id, text: "{body}"}
    """
    )
    source = load_index(write_index(tmp_path / "ok", explicit)).sources[0]
    assert isinstance(source, TableSourceConfig) and source.table_format == "csv"


def test_parquet_format_from_the_suffix(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - {name: a, type: table, path: a.parquet, key: id, text: "{body}"}
      - {name: b, type: table, path: b.PQ, key: id, text: "{body}"}
    """
    )
    cfg = load_index(write_index(tmp_path, body))
    assert [s.table_format for s in cfg.sources] == ["parquet", "parquet"]  # type: ignore[union-attr]


def test_template_must_name_a_column(tmp_path: Path) -> None:
    body = minimal(
        source="""
    sources:
      - {name: rows, type: table, path: rows.csv, key: id, text: "no columns here"}
    """
    )
    _, message = load_error(tmp_path, body)
    assert "sources.0.table.text" in message
    assert "must name at least one column" in message


def test_template_fields() -> None:
    assert template_fields("{title}: {body!r} ({ price :.2f})") == ["title", "body", "price"]
    assert template_fields("plain") == []


def test_qdrant_accepts_only_one_target(tmp_path: Path) -> None:
    body = minimal(extra="qdrant:\n  path: q\n  url: http://localhost:6333\n")
    _, message = load_error(tmp_path, body)
    assert "qdrant" in message
    assert "set only one of path, location and url" in message


def test_embedding_device_pattern(tmp_path: Path) -> None:
    _, message = load_error(tmp_path, minimal(extra="embedding:\n  device: gpu\n"))
    assert "embedding.device" in message
    for ok in ("cpu", "cuda", "cuda:1", "mps"):
        cfg = load_index(write_index(tmp_path / ok.replace(":", "_"), minimal(extra=f"embedding:\n  device: '{ok}'\n")))
        assert cfg.embedding.device == ok


def test_config_error_is_a_groundwork_error() -> None:
    assert issubclass(ConfigError, GroundworkError)
    with pytest.raises(GroundworkError, match="<index definition>"):
        parse_index({"name": "demo", "sources": []})


def test_unknown_source_lookup_lists_the_sources(tmp_path: Path) -> None:
    cfg = load_index(write_index(tmp_path, VALID))
    with pytest.raises(ConfigError, match=r"has no source 'nope'; it has: \['docs', 'glossary', 'tickets'\]"):
        cfg.source("nope")


# --- fingerprint ----------------------------------------------------------------------------------------


def _cfg(**overrides: object) -> IndexConfig:
    raw: dict[str, object] = {"name": "demo", "sources": [{"name": "docs", "type": "files", "path": "/tmp/docs"}]}
    raw.update(overrides)
    return parse_index(raw)


def test_fingerprint_is_stable_and_short() -> None:
    first, second = _cfg().fingerprint(), _cfg().fingerprint()
    assert first == second
    assert len(first) == 16 and int(first, 16) >= 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"chunking": {"strategy": "basic"}},
        {"chunking": {"max_characters": 1200}},
        {"chunking": {"overlap": 10}},
        {"chunking": {"strategy": "tokens", "max_tokens": 128}},
        {"embedding": {"model": "paraphrase-MiniLM-L3-v2"}},
        {"embedding": {"normalize": False}},
        {"enrichment": {"metadata": {"project": "x"}}},
    ],
    ids=["strategy", "max_characters", "overlap", "max_tokens", "model", "normalize", "enrichment"],
)
def test_fingerprint_changes_with_what_shapes_chunks_and_vectors(overrides: dict[str, object]) -> None:
    assert _cfg(**overrides).fingerprint() != _cfg().fingerprint()


@pytest.mark.parametrize(
    "overrides",
    [
        {"qdrant": {"location": ":memory:"}},
        {"qdrant": {"url": "http://qdrant:6333", "upload_batch_size": 64}},
        {"qdrant": {"path": "/somewhere/else"}},
        {"embedding": {"batch_size": 128}},
        {"embedding": {"device": "cuda"}},
        {"processing": {"batch_size": 7, "max_batches": 3}},
        {"schedule": None, "tags": ["x"], "description": "changed"},
        {"sources": [{"name": "other", "type": "files", "path": "/tmp/other", "include": ["*.md"]}]},
    ],
    ids=["qdrant-memory", "qdrant-url", "qdrant-path", "embedding-batch", "device", "processing", "misc", "sources"],
)
def test_fingerprint_ignores_where_and_how_fast(overrides: dict[str, object]) -> None:
    assert _cfg(**overrides).fingerprint() == _cfg().fingerprint()


def test_fingerprint_of_a_loaded_file_matches_the_parsed_mapping(tmp_path: Path) -> None:
    cfg = load_index(write_index(tmp_path, minimal(extra="chunking:\n  strategy: basic\n")))
    assert cfg.fingerprint() == _cfg(chunking={"strategy": "basic"}).fingerprint()


# --- folders of index files -----------------------------------------------------------------------------


def test_load_indexes_over_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "indexes"
    write_index(folder, minimal(name="beta"), file_name="beta.yaml")
    write_index(folder, minimal(name="alpha"), file_name="alpha.yml")
    (folder / "README.md").write_text("not an index", encoding="utf-8")
    (folder / "sub").mkdir()
    write_index(folder / "sub", minimal(name="nested"), file_name="nested.yaml")  # not listed: one level only

    assert [p.name for p in discover_index_files(folder)] == ["alpha.yml", "beta.yaml"]
    indexes = load_indexes(folder)
    assert sorted(indexes) == ["alpha", "beta"]
    assert indexes["alpha"].source_file == (folder / "alpha.yml").resolve()
    assert indexes["beta"].sources[0].path == (folder / "docs").resolve()  # type: ignore[union-attr]


def test_load_indexes_of_an_empty_folder(tmp_path: Path) -> None:
    assert load_indexes(tmp_path) == {}


def test_load_indexes_raises_for_the_invalid_file(tmp_path: Path) -> None:
    folder = tmp_path / "indexes"
    write_index(folder, minimal(name="good"), file_name="good.yaml")
    write_index(folder, minimal(name="bad", extra="chunking:\n  strategy: nope\n"), file_name="bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_indexes(folder)
    assert str((folder / "bad.yaml").resolve()) in str(info.value)
    assert "chunking.strategy" in str(info.value)


def test_load_indexes_refuses_the_same_index_twice(tmp_path: Path) -> None:
    folder = tmp_path / "indexes"
    write_index(folder, minimal(name="demo"), file_name="demo.yaml")
    write_index(folder, minimal(name="demo"), file_name="demo.yml")
    with pytest.raises(ConfigError, match="'demo' is also defined in") as info:
        load_indexes(folder)
    assert "demo.yaml" in str(info.value) and "demo.yml" in str(info.value)


# --- the example index shipped with the project ---------------------------------------------------------


def test_example_index_loads_and_its_sources_exist() -> None:
    cfg = load_index(EXAMPLE_INDEX)

    assert cfg.name == "groundwork_docs"
    assert cfg.source_names == ["docs", "glossary"]
    docs = cfg.source("docs")
    glossary = cfg.source("glossary")
    assert isinstance(docs, FileSourceConfig) and isinstance(glossary, TableSourceConfig)
    assert docs.path == REPO_ROOT.resolve()
    assert docs.path.is_dir()
    assert glossary.path == (REPO_ROOT / "include" / "examples" / "glossary.csv").resolve()
    assert glossary.path.is_file()
    for pattern in docs.include:
        assert list(docs.path.glob(pattern)), f"include pattern {pattern!r} matches nothing"
    assert EXAMPLE_INDEX.resolve() in [p.resolve() for p in discover_index_files(EXAMPLE_INDEX.parent)]


def test_example_index_sources_can_be_listed() -> None:
    cfg = load_index(EXAMPLE_INDEX)

    docs = discover(cfg.source("docs"))
    assert "docs:README.md" in [d.doc_id for d in docs.documents]
    assert any(d.doc_id.startswith("docs:include/docs/") for d in docs.documents)
    assert docs.skipped == []

    glossary = discover(cfg.source("glossary"))
    assert len(glossary.documents) >= 3
    assert glossary.skipped == []
    first = glossary.documents[0]
    assert first.doc_id.startswith("glossary:")
    assert first.text and first.title in first.text
    assert set(first.metadata) == {"category"}
    assert first.modified_at is not None
