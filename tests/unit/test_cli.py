"""The groundwork command: run, versions, show, search, and clear errors with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from groundwork.cli import main
from tests.conftest import write_docs


def _index_file(tmp_path: Path, **extra: object) -> Path:
    indexes = tmp_path / "indexes"
    indexes.mkdir(exist_ok=True)
    write_docs(tmp_path / "docs")
    raw = {
        "name": "handbook",
        "sources": [{"name": "docs", "type": "files", "path": "../docs", "languages": ["eng"]}],
        **extra,
    }
    path = indexes / "handbook.yaml"
    path.write_text(yaml.safe_dump(raw))
    return indexes


@pytest.mark.model
def test_run_then_search_versions_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    indexes = _index_file(tmp_path)
    base = ["--home", str(tmp_path / "data"), "--indexes", str(indexes)]
    assert main([*base, "run", "handbook"]) == 0
    out = capsys.readouterr().out
    assert "new 3" in out and "live: handbook__" in out

    assert main([*base, "search", "handbook", "solar battery charging", "-k", "2"]) == 0
    assert "docs:beta.md" in capsys.readouterr().out.splitlines()[0]

    assert main([*base, "versions", "handbook"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].strip().startswith("*")

    assert main([*base, "show", "handbook"]) == 0
    assert "(live)" in capsys.readouterr().out


def test_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    indexes = _index_file(tmp_path, chunking={"strategy": "sentences"})
    code = main(["--home", str(tmp_path / "data"), "--indexes", str(indexes), "versions", "handbook"])
    err = capsys.readouterr().err
    assert code == 2
    assert "handbook.yaml" in err and "chunking.strategy" in err and "'by_title', 'basic' or 'tokens'" in err

    code = main(["--home", str(tmp_path / "data"), "--indexes", str(indexes), "run", "nope"])
    assert code == 2 and "no index 'nope'" in capsys.readouterr().err


def test_search_before_any_run_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    indexes = _index_file(tmp_path)
    code = main(["--home", str(tmp_path / "data"), "--indexes", str(indexes), "show", "handbook"])
    assert code == 2 and "groundwork run handbook" in capsys.readouterr().err
