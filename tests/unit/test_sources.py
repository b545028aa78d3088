"""Sources: folders of files, CSV/Parquet tables and SQL queries listed as documents."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from groundwork.config import FileSourceConfig, SqlSourceConfig, TableSourceConfig
from groundwork.documents import SourceDocument
from groundwork.errors import SourceError
from groundwork.sources import Discovery, Skipped, discover
from groundwork.sources.files import _salt, file_hash
from groundwork.sources.sql import resolve_url

PASSWORD = "hunter2-Sup3rSecret"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


def by_id(found: Discovery) -> dict[str, SourceDocument]:
    return {d.doc_id: d for d in found.documents}


# --- files ----------------------------------------------------------------------------------------------


def files_source(path: Path, **kw: Any) -> FileSourceConfig:
    return FileSourceConfig(type="files", name=kw.pop("name", "docs"), path=path, **kw)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "a.md", "# A\n\nalpha\n")
    write(root / "notes.txt", "plain notes\n")
    write(root / "sub" / "b.md", "# B\n\nbeta\n")
    write(root / "sub" / "deep" / "c.html", "<p>gamma</p>\n")
    write(root / "drafts" / "d.md", "# draft\n")
    write(root / "sub" / "drafts" / "e.md", "# nested draft\n")
    return root


def test_files_lists_supported_documents_with_stable_ids(tree: Path) -> None:
    found = discover(files_source(tree))

    assert found.source == "docs"
    assert sorted(by_id(found)) == [
        "docs:a.md",
        "docs:drafts/d.md",
        "docs:notes.txt",
        "docs:sub/b.md",
        "docs:sub/deep/c.html",
        "docs:sub/drafts/e.md",
    ]
    assert found.skipped == []
    doc = by_id(found)["docs:sub/b.md"]
    assert doc.kind == "file"
    assert doc.source == "docs"
    assert doc.uri == doc.path == str(tree / "sub" / "b.md")
    assert doc.title == "b"
    assert doc.text is None  # files are hashed, not read into the document
    assert len(doc.content_hash) == 64
    # the same listing twice gives the same ids and hashes
    again = discover(files_source(tree))
    assert [(d.doc_id, d.content_hash) for d in again.documents] == [
        (d.doc_id, d.content_hash) for d in found.documents
    ]


def test_files_include_and_exclude_globs(tree: Path) -> None:
    only_md = discover(files_source(tree, include=["**/*.md"]))
    assert sorted(by_id(only_md)) == ["docs:a.md", "docs:drafts/d.md", "docs:sub/b.md", "docs:sub/drafts/e.md"]

    top_level = discover(files_source(tree, include=["*.md", "*.txt"]))
    assert sorted(by_id(top_level)) == ["docs:a.md", "docs:notes.txt"]

    overlapping = discover(files_source(tree, include=["**/*.md", "sub/*.md", "a.md"]))
    assert len(overlapping.documents) == len(by_id(overlapping)) == 4  # listed once each

    excluded = discover(files_source(tree, include=["**/*.md"], exclude=["drafts/*"]))
    assert sorted(by_id(excluded)) == ["docs:a.md", "docs:sub/b.md", "docs:sub/drafts/e.md"]

    excluded_everywhere = discover(files_source(tree, exclude=["**/drafts/**", "*.html"]))
    assert sorted(by_id(excluded_everywhere)) == ["docs:a.md", "docs:notes.txt", "docs:sub/b.md"]


def test_files_unsupported_and_empty_files_are_recorded(tree: Path) -> None:
    write(tree / "data.bin", b"\x00\x01")
    write(tree / "Makefile", "all:\n")
    write(tree / "sub" / "empty.md", b"")

    found = discover(files_source(tree))

    skipped = {Path(s.uri).name: s for s in found.skipped}
    assert set(skipped) == {"data.bin", "Makefile", "empty.md"}
    assert skipped["data.bin"].error_type == "UnsupportedFileType"
    assert ".bin" in skipped["data.bin"].message
    assert skipped["Makefile"].error_type == "UnsupportedFileType"
    assert "no extension" in skipped["Makefile"].message
    assert skipped["empty.md"].error_type == "EmptyFile"
    assert all(s.source == "docs" and s.stage == "discover" for s in found.skipped)
    assert skipped["empty.md"].to_dict()["uri"] == str(tree / "sub" / "empty.md")
    assert "docs:sub/empty.md" not in by_id(found)
    assert "docs:a.md" in by_id(found)


def test_files_over_the_size_limit_are_recorded(tree: Path) -> None:
    write(tree / "big.txt", b"x" * 2048)
    found = discover(files_source(tree, max_file_mb=0.001))  # about 1 KiB
    assert [(Path(s.uri).name, s.error_type) for s in found.skipped] == [("big.txt", "FileTooLarge")]
    assert "docs:a.md" in by_id(found)


def test_files_symlink_outside_the_folder_is_not_followed(tmp_path: Path, tree: Path) -> None:
    outside = write(tmp_path / "outside" / "secret.md", "# secret\n")
    (tree / "link.md").symlink_to(outside)
    (tree / "linked_dir").symlink_to(outside.parent, target_is_directory=True)

    found = discover(files_source(tree))

    assert not any("secret" in d.doc_id or "link" in d.doc_id for d in found.documents)
    skipped = {Path(s.uri).name: s for s in found.skipped}
    assert skipped["link.md"].error_type == "SymlinkOutsideSource"
    assert "not followed" in skipped["link.md"].message
    assert skipped["linked_dir"].error_type == "SymlinkOutsideSource"


def test_files_symlinked_folder_outside_is_not_entered_by_explicit_patterns(tmp_path: Path, tree: Path) -> None:
    outside = write(tmp_path / "outside" / "secret.md", "# secret\n")
    (tree / "linked_dir").symlink_to(outside.parent, target_is_directory=True)

    for include in (["*/*.md"], ["linked_dir/*.md"], ["linked_dir/**/*.md"]):
        found = discover(files_source(tree, include=include))
        assert "docs:linked_dir/secret.md" not in by_id(found), include
        assert [s.error_type for s in found.skipped if "secret" in s.uri] == ["SymlinkOutsideSource"], include


def test_files_symlink_inside_the_folder_is_followed(tree: Path) -> None:
    (tree / "alias.md").symlink_to(tree / "a.md")
    found = discover(files_source(tree))
    docs = by_id(found)
    assert docs["docs:alias.md"].content_hash == docs["docs:a.md"].content_hash
    assert found.skipped == []


def test_files_broken_symlink_is_recorded(tree: Path) -> None:
    (tree / "gone.md").symlink_to(tree / "never-written.md")
    found = discover(files_source(tree))
    assert [(Path(s.uri).name, s.error_type) for s in found.skipped] == [("gone.md", "BrokenSymlink")]


def test_files_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source 'docs': folder .* does not exist") as info:
        discover(files_source(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)

    a_file = write(tmp_path / "file.md", "x")
    with pytest.raises(SourceError, match="not a folder"):
        discover(files_source(a_file))


def test_files_content_hash_follows_bytes_not_mtime(tree: Path) -> None:
    target = tree / "a.md"
    listed = by_id(discover(files_source(tree)))
    before = listed["docs:a.md"]

    stamp = datetime(2020, 5, 17, 12, 30, tzinfo=UTC).timestamp()
    os.utime(target, (stamp, stamp))
    touched = by_id(discover(files_source(tree)))["docs:a.md"]
    assert touched.content_hash == before.content_hash
    assert touched.modified_at == "2020-05-17T12:30:00+00:00"
    assert touched.modified_at != before.modified_at

    target.write_text("# A\n\nalpha, edited\n", encoding="utf-8")
    os.utime(target, (stamp, stamp))  # same mtime as before: only the bytes differ
    edited = by_id(discover(files_source(tree)))["docs:a.md"]
    assert edited.content_hash != before.content_hash
    # the other documents are untouched
    assert by_id(discover(files_source(tree)))["docs:sub/b.md"].content_hash == listed["docs:sub/b.md"].content_hash


def test_files_hash_is_sha256_of_settings_and_bytes(tree: Path) -> None:
    cfg = files_source(tree)
    doc = by_id(discover(cfg))["docs:notes.txt"]
    salt = _salt(cfg)
    assert b"fast" in salt  # the partition settings are part of it
    assert doc.content_hash == hashlib.sha256(salt + b"plain notes\n").hexdigest()
    assert file_hash(tree / "notes.txt", salt) == doc.content_hash


def test_files_partition_settings_change_the_hash_and_set_the_language(tree: Path) -> None:
    plain = by_id(discover(files_source(tree)))["docs:a.md"]
    english = by_id(discover(files_source(tree, languages=["eng"])))["docs:a.md"]
    several = by_id(discover(files_source(tree, languages=["eng", "deu"])))["docs:a.md"]
    assert plain.language is None
    assert english.language == "eng"
    assert several.language is None  # several candidates: detected later, per document
    assert len({plain.content_hash, english.content_hash, several.content_hash}) == 3


def test_files_names_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    root = tmp_path / "dossier été"
    write(root / "Größe Übersicht.md", "# Größe\n")
    write(root / "日本 語" / "メモ.txt", "メモ\n")
    write(root / "naïve café.html", "<p>café</p>\n")

    found = discover(files_source(root))

    docs = by_id(found)
    assert sorted(docs) == ["docs:Größe Übersicht.md", "docs:naïve café.html", "docs:日本 語/メモ.txt"]
    memo = docs["docs:日本 語/メモ.txt"]
    assert memo.path == str(root / "日本 語" / "メモ.txt")
    assert memo.title == "メモ"
    assert memo.content_hash == hashlib.sha256(_salt(files_source(root)) + "メモ\n".encode()).hexdigest()
    # a document written to JSON and read back keeps its id
    assert SourceDocument.from_json(memo.to_json()) == memo


# --- tables ---------------------------------------------------------------------------------------------


def table_source(path: Path, **kw: Any) -> TableSourceConfig:
    kw.setdefault("key", "id")
    kw.setdefault("text", "{body}")
    return TableSourceConfig(type="table", name=kw.pop("name", "rows"), path=path, **kw)


GLOSSARY = pa.table(
    {
        "id": ["007", "010", "011"],
        "term": ["alias", "chunk", "embedding"],
        "category": ["Qdrant", "Chunking", "Embedding"],
        "body": ["A second name.", "A piece of a document.", "A vector."],
        "unused": ["x", "y", "z"],
        "updated_at": ["2026-11-01T09:00:00Z", "2026-11-02T09:00:00Z", "2026-11-03T09:00:00Z"],
    }
)


@pytest.fixture(params=["csv", "parquet"])
def glossary_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "csv":
        path = tmp_path / "glossary.csv"
        pacsv.write_csv(GLOSSARY, path)
    else:
        path = tmp_path / "glossary.parquet"
        pq.write_table(GLOSSARY, path)
    return path


def test_table_templates_metadata_keys_and_timestamps(glossary_file: Path) -> None:
    cfg = table_source(
        glossary_file,
        title="{term} ({category})",
        text="{term}: {body}",
        metadata_columns=["category"],
        timestamp_column="updated_at",
        language="eng",
    )
    found = discover(cfg)

    assert found.skipped == []
    docs = by_id(found)
    assert list(docs) == ["rows:007", "rows:010", "rows:011"]  # "007" stays a string, in file order
    alias = docs["rows:007"]
    assert alias.kind == "row"
    assert alias.title == "alias (Qdrant)"
    assert alias.text == "alias: A second name."
    assert alias.metadata == {"category": "Qdrant"}
    assert alias.modified_at == "2026-11-01T09:00:00Z"
    assert alias.language == "eng"
    assert alias.uri == f"{glossary_file}#007"
    assert alias.path is None


def test_table_title_defaults_to_the_key_and_multi_column_keys(glossary_file: Path) -> None:
    found = discover(table_source(glossary_file, key=["category", "id"]))
    docs = by_id(found)
    assert sorted(docs) == ["rows:Chunking/010", "rows:Embedding/011", "rows:Qdrant/007"]
    assert docs["rows:Qdrant/007"].title == "Qdrant/007"
    assert docs["rows:Qdrant/007"].metadata == {}
    assert docs["rows:Qdrant/007"].modified_at is None


def test_table_hash_follows_rendered_content_only(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pacsv.write_csv(GLOSSARY, path)
    cfg = table_source(path, text="{term}: {body}", metadata_columns=["category"])
    before = by_id(discover(cfg))

    pacsv.write_csv(GLOSSARY.set_column(4, "unused", pa.array(["changed", "y", "z"])), path)
    assert by_id(discover(cfg))["rows:007"].content_hash == before["rows:007"].content_hash

    pacsv.write_csv(GLOSSARY.set_column(3, "body", pa.array(["Edited.", "A piece of a document.", "A vector."])), path)
    after = by_id(discover(cfg))
    assert after["rows:007"].content_hash != before["rows:007"].content_hash
    assert after["rows:010"].content_hash == before["rows:010"].content_hash

    pacsv.write_csv(GLOSSARY.set_column(2, "category", pa.array(["Other", "Chunking", "Embedding"])), path)
    assert by_id(discover(cfg))["rows:007"].content_hash != after["rows:007"].content_hash

    relabelled = by_id(
        discover(table_source(path, text="{term}: {body}", metadata_columns=["category"], language="deu"))
    )
    assert relabelled["rows:010"].content_hash != after["rows:010"].content_hash


def test_table_group_by_makes_one_document_per_group(tmp_path: Path) -> None:
    table = pa.table(
        {
            "ticket": ["T1", "T2", "T1", "T1"],
            "line": ["1", "1", "2", "3"],
            "body": ["first", "other ticket", "second", "third"],
            "at": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-01-15"],
        }
    )
    path = tmp_path / "lines.parquet"
    pq.write_table(table, path)

    found = discover(
        table_source(
            path, key="line", group_by="ticket", text="{line}. {body}", title="Ticket {ticket}", timestamp_column="at"
        )
    )

    assert found.skipped == []  # repeated rows within a group are not duplicates
    docs = by_id(found)
    assert sorted(docs) == ["rows:T1", "rows:T2"]
    assert docs["rows:T1"].text == "1. first\n2. second\n3. third"
    assert docs["rows:T1"].title == "Ticket T1"
    assert docs["rows:T1"].modified_at == "2024-03-01"  # the latest of the group
    assert docs["rows:T2"].text == "1. other ticket"


def test_parquet_typed_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([7, 8, None], pa.int64()),
            "code": ["007", "008", "009"],
            "body": ["seven", "eight", "none"],
            "score": pa.array([1.5, None, 3.0]),
            "at": pa.array(
                [datetime(2024, 1, 2, 3, 4, 5), datetime(2024, 1, 3), datetime(2024, 1, 4)], pa.timestamp("us")
            ),
            "at_tz": pa.array([datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)] * 3, pa.timestamp("ms", tz="UTC")),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)

    by_int = discover(table_source(path, metadata_columns=["score", "code"], timestamp_column="at"))
    docs = by_id(by_int)
    assert sorted(docs) == ["rows:7", "rows:8"]
    assert [s.error_type for s in by_int.skipped] == ["MissingKey"]
    assert docs["rows:7"].metadata == {"score": 1.5, "code": "007"}
    assert docs["rows:8"].metadata == {"score": None, "code": "008"}
    assert docs["rows:7"].modified_at == "2024-01-02T03:04:05+00:00"  # naive timestamps are taken as UTC

    by_code = by_id(discover(table_source(path, key="code", timestamp_column="at_tz")))
    assert sorted(by_code) == ["rows:007", "rows:008", "rows:009"]
    assert by_code["rows:007"].modified_at == "2024-05-06T07:08:09+00:00"


def test_table_duplicate_and_missing_keys_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "id,body\n007,first\n008,second\n007,again\n,no key\n009,third\n")

    found = discover(table_source(path))

    docs = by_id(found)
    assert sorted(docs) == ["rows:007", "rows:008", "rows:009"]
    assert docs["rows:007"].text == "first"  # the first occurrence is kept
    assert [(s.error_type, s.uri) for s in found.skipped] == [
        ("DuplicateKey", f"{path}#007"),
        ("MissingKey", f"{path}#row4"),
    ]
    assert "row 3 repeats key '007'" in found.skipped[0].message


def test_table_missing_column_lists_the_available_ones(glossary_file: Path) -> None:
    with pytest.raises(SourceError) as info:
        discover(table_source(glossary_file, text="{term}: {definition}", metadata_columns=["owner"]))
    message = str(info.value)
    assert "source 'rows'" in message
    assert "definition, owner not found" in message
    assert "available: body, category, id, term, unused, updated_at" in message


def test_csv_ragged_rows_are_recorded_and_good_rows_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        'id,title,body\n001,One,"first, quoted"\n002,Two,too,many,fields\n003,Three\n004,Four,"multi\nline"\n',
    )

    found = discover(table_source(path, text="{title}: {body}"))

    docs = by_id(found)
    assert sorted(docs) == ["rows:001", "rows:004"]
    assert docs["rows:001"].text == "One: first, quoted"
    assert docs["rows:004"].text == "Four: multi\nline"
    ragged = [s for s in found.skipped if s.error_type == "RaggedRow"]
    assert len(ragged) == 2 == len(found.skipped)
    assert "expected 3 fields, found 5" in ragged[0].message and "002,Two" in ragged[0].message
    assert "expected 3 fields, found 2" in ragged[1].message and "003,Three" in ragged[1].message
    assert [s.uri for s in ragged] == [f"{path}#line3", f"{path}#line4"]


def test_csv_ragged_rows_get_their_line_numbers_after_multiline_and_repeated_rows(tmp_path: Path) -> None:
    body = ["id,title,body", '001,One,"spans\nthree\nlines"', "bad,row", "002,Two,fine", "bad,row", "003,Three,x,y"]
    path = write(tmp_path / "t.csv", "\n".join(body) + "\n")

    found = discover(table_source(path, text="{title}: {body}"))

    assert sorted(by_id(found)) == ["rows:001", "rows:002"]
    # Line 2 holds a value over three lines: the ragged rows are on lines 5, 7 and 8 of the file.
    assert [s.uri.rsplit("#", 1)[1] for s in found.skipped] == ["line5", "line7", "line8"]


def test_csv_multiline_values_larger_than_one_read_block(tmp_path: Path) -> None:
    rows = ["id,body"] + [f'{i:05d},"first line {i} {"x" * 60}\nsecond line {i}"' for i in range(14_000)]
    path = write(tmp_path / "big.csv", "\n".join(rows) + "\n")
    assert path.stat().st_size > 1 << 20  # pyarrow reads CSV in 1 MiB blocks

    found = discover(table_source(path))

    assert len(found.documents) == 14_000
    assert found.skipped == []
    assert by_id(found)["rows:13999"].text.endswith("\nsecond line 13999")


def test_csv_header_with_bom_and_format_override(tmp_path: Path) -> None:
    path = write(tmp_path / "export.txt", "\ufeffid,body\n1,hello\n")
    found = discover(table_source(path, format="csv"))
    assert [d.doc_id for d in found.documents] == ["rows:1"]


def test_table_missing_or_unreadable_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source 'rows': table file .* does not exist"):
        discover(table_source(tmp_path / "nope.csv"))
    bad = write(tmp_path / "bad.parquet", b"this is not parquet")
    with pytest.raises(SourceError, match="source 'rows': cannot read"):
        discover(table_source(bad))
    empty = write(tmp_path / "empty.csv", b"")
    with pytest.raises(SourceError, match="source 'rows': cannot read"):
        discover(table_source(empty))


# --- sql ------------------------------------------------------------------------------------------------


def sql_source(**kw: Any) -> SqlSourceConfig:
    kw.setdefault("query", "select id, subject, body, category, updated_at from tickets order by id")
    kw.setdefault("key", "id")
    kw.setdefault("text", "{subject}: {body}")
    return SqlSourceConfig(type="sql", name=kw.pop("name", "tickets"), **kw)


TICKETS = [
    (1, "Login", "Cannot log in.", "auth", "2024-01-01 10:00:00"),
    (2, "Export", "CSV export is empty.", "data", "2024-01-02 10:00:00"),
    (3, "Login", "Password reset mail never arrives.", "auth", "2024-01-03 10:00:00"),
]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "tickets.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "create table tickets (id integer primary key, subject text, body text, category text, updated_at text)"
        )
        conn.executemany("insert into tickets values (?, ?, ?, ?, ?)", TICKETS)
    conn.close()
    return f"sqlite:///{path}"


def check_tickets(found: Discovery) -> None:
    docs = by_id(found)
    assert list(docs) == ["tickets:1", "tickets:2", "tickets:3"]
    assert docs["tickets:2"].text == "Export: CSV export is empty."
    assert docs["tickets:2"].uri == "sql://tickets#2"
    assert docs["tickets:2"].kind == "row"
    assert found.skipped == []


def test_sql_sqlite_from_url(sqlite_url: str) -> None:
    found = discover(
        sql_source(
            url=sqlite_url, title="#{id} {subject}", metadata_columns=["category"], timestamp_column="updated_at"
        )
    )
    check_tickets(found)
    doc = by_id(found)["tickets:1"]
    assert doc.title == "#1 Login"
    assert doc.metadata == {"category": "auth"}
    assert doc.modified_at == "2024-01-01 10:00:00"


def test_sql_group_by(sqlite_url: str) -> None:
    found = discover(sql_source(url=sqlite_url, group_by="subject", text="{body}"))
    docs = by_id(found)
    assert sorted(docs) == ["tickets:Export", "tickets:Login"]
    assert docs["tickets:Login"].text == "Cannot log in.\nPassword reset mail never arrives."


def test_sql_url_from_environment(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_TICKETS_URL", sqlite_url)
    check_tickets(discover(sql_source(url_env="GW_TEST_TICKETS_URL")))


def test_sql_url_env_unset_without_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_UNSET_URL", raising=False)
    with pytest.raises(SourceError, match="source 'tickets': no database URL") as info:
        discover(sql_source(url_env="GW_TEST_UNSET_URL"))
    assert "GW_TEST_UNSET_URL" in str(info.value)


def test_sql_url_from_airflow_connection_env(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TICKETS_DB", sqlite_url)
    # the connection wins over a url that would fail
    cfg = sql_source(connection_id="tickets_db", url=f"sqlite:///{tmp_path}/missing/x.db")
    check_tickets(discover(cfg))


def test_sql_connection_resolver_is_used(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_TICKETS_DB", raising=False)
    asked: list[str] = []

    def resolver(conn_id: str) -> str | None:
        asked.append(conn_id)
        return sqlite_url

    check_tickets(discover(sql_source(connection_id="tickets_db"), resolve_connection=resolver))
    assert asked == ["tickets_db"]


def test_sql_unknown_connection_falls_back_then_fails(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    check_tickets(discover(sql_source(connection_id="nope", url=sqlite_url)))
    with pytest.raises(SourceError, match="no database URL: set connection 'nope'"):
        discover(sql_source(connection_id="nope"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+psycopg://u:p@db/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_sql_airflow_style_uris_become_sqlalchemy_urls(
    given: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SOME_DB", given)
    monkeypatch.setenv("GW_TEST_SOME_URL", given)
    assert resolve_url(sql_source(connection_id="some_db"), None) == expected
    assert resolve_url(sql_source(url_env="GW_TEST_SOME_URL"), None) == expected
    assert resolve_url(sql_source(url=given), None) == expected


def test_sql_missing_column_lists_the_available_ones(sqlite_url: str) -> None:
    with pytest.raises(SourceError) as info:
        discover(sql_source(url=sqlite_url, query="select id, subject from tickets", text="{subject} {body}"))
    assert "source 'tickets'" in str(info.value)
    assert "body not found; available: id, subject" in str(info.value)


def test_sql_failing_query(sqlite_url: str) -> None:
    with pytest.raises(SourceError, match=r"source 'tickets': query failed against sqlite:///.*no such table: nope"):
        discover(sql_source(url=sqlite_url, query="select * from nope"))


def assert_no_secret(exc: BaseException) -> None:
    assert PASSWORD not in str(exc)
    assert PASSWORD not in "".join(traceback.format_exception(exc))  # what a task log would show


def test_sql_unreachable_server_names_the_source_and_hides_the_password() -> None:
    for url in (
        f"postgresql+psycopg://reader:{PASSWORD}@127.0.0.1:1/test",
        f"postgres://reader:{PASSWORD}@127.0.0.1:1/test",
    ):
        with pytest.raises(SourceError) as info:
            discover(sql_source(url=url))
        message = str(info.value)
        assert "source 'tickets'" in message
        assert "127.0.0.1:1" in message and "reader:***@" in message
        assert_no_secret(info.value)


def test_sql_unreachable_via_environment_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REPORTING", f"postgres://reader:{PASSWORD}@127.0.0.1:1/test")
    with pytest.raises(SourceError) as info:
        discover(sql_source(connection_id="reporting"))
    assert "source 'tickets'" in str(info.value)
    assert_no_secret(info.value)


def test_sql_sqlite_in_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        discover(sql_source(url=f"sqlite:///{tmp_path}/no/such/folder/x.db"))
    assert "source 'tickets'" in str(info.value)
    assert "unable to open database file" in str(info.value)
    assert not (tmp_path / "no").exists()


def test_sql_unusable_urls() -> None:
    with pytest.raises(SourceError, match="source 'tickets': invalid database URL") as info:
        discover(sql_source(url=f"not a url {PASSWORD}"))
    assert_no_secret(info.value)
    with pytest.raises(SourceError, match="source 'tickets': cannot use database URL") as info:
        discover(sql_source(url=f"nosuchdialect://u:{PASSWORD}@h/db"))
    assert_no_secret(info.value)


@pytest.fixture
def pg_table() -> Iterator[str]:
    """A uniquely named table in the local PostgreSQL ``test`` database, dropped afterwards."""
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        if "CI" in os.environ:
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 (database test, user postgres) is required in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    try:
        conn.execute(
            f"create table {name} (id integer primary key, subject text, body text, category text, "
            "updated_at timestamptz)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                f"insert into {name} values (%s, %s, %s, %s, %s)", [(*t[:4], t[4] + "+00") for t in TICKETS]
            )
        yield name
    finally:
        conn.execute(f"drop table if exists {name}")
        conn.close()


def test_sql_postgres(pg_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    query = f"select id, subject, body, category, updated_at from {pg_table} order by id"
    found = discover(
        sql_source(
            url="postgresql+psycopg://postgres@127.0.0.1:5432/test",
            query=query,
            metadata_columns=["category"],
            timestamp_column="updated_at",
        )
    )
    check_tickets(found)
    doc = by_id(found)["tickets:3"]
    assert doc.metadata == {"category": "auth"}
    assert doc.modified_at == "2024-01-03T10:00:00+00:00"

    monkeypatch.setenv("AIRFLOW_CONN_GW_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
    via_connection = discover(sql_source(connection_id="gw_test_pg", query=query))
    check_tickets(via_connection)
    assert [d.content_hash for d in via_connection.documents] == [
        d.content_hash for d in discover(sql_source(url="postgresql://postgres@127.0.0.1/test", query=query)).documents
    ]


def test_skipped_record_round_trip() -> None:
    record = Skipped("docs", "/x/a.bin", "UnsupportedFileType", ".bin is not supported")
    assert record.to_dict() == {
        "source": "docs",
        "uri": "/x/a.bin",
        "error_type": "UnsupportedFileType",
        "message": ".bin is not supported",
        "stage": "discover",
    }


def test_table_multi_column_keys_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("a,b\na/b,c\na,b/c\n")
    found = discover(table_source(path, key=["a", "b"], text="{a} {b}"))
    ids = [d.doc_id for d in found.documents]
    assert len(ids) == 2 and len(set(ids)) == 2 and not found.skipped


def test_table_rows_a_template_cannot_render_are_skipped_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("id,price\n1,1.5\n")
    # CSV columns are text, so a float format fails: the row is skipped with the reason, not a crash.
    found = discover(table_source(path, text="costs {price:.2f}"))
    assert found.documents == []
    assert [s.error_type for s in found.skipped] == ["TemplateError"]
    assert "price" in found.skipped[0].message or "format" in found.skipped[0].message


def test_sqlite_numeric_keys_have_no_trailing_zero(tmp_path: Path) -> None:
    db = tmp_path / "n.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id REAL, body TEXT)")
        conn.execute("INSERT INTO t VALUES (7.0, 'seven')")
    cfg = SqlSourceConfig(type="sql", name="nums", query="SELECT id, body FROM t", url=f"sqlite:///{db}", key=["id"],
                          text="{body}")  # fmt: skip
    assert [d.doc_id for d in discover(cfg).documents] == ["nums:7"]
