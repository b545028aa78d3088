"""The DVC experiment pipeline in a temporary copy of the repository: `dvc repro` and `dvc exp run`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.model


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_repro_and_an_experiment_variant_produce_metrics(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.split():
        if (REPO_ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    shutil.rmtree(repo / "metrics", ignore_errors=True)
    (repo / "dvc.lock").unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GROUNDWORK_HOME": str(tmp_path / "data"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip
    _run(["git", "init", "-q", "-b", "main"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "copy"], repo, env)

    _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    baseline = json.loads((repo / "metrics" / "retrieval.json").read_text())
    assert baseline["queries"] >= 10 and baseline["chunks"] > 0
    for mode in ("dense", "hybrid"):
        assert 0 < baseline[mode]["ndcg_at_5"] <= 1 and 0 < baseline[mode]["mrr"] <= 1

    out = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "chunking.strategy=tokens",
                "-S", "chunking.max_tokens=96"], repo, env)  # fmt: skip
    assert "Ran experiment" in out or "Reproduced experiment" in out or "exp" in out.lower()
    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo, env))
    experiments = [
        e for entry in shown for e in (entry.get("experiments") or []) for e in (e.get("revs") or [])
    ]  # fmt: skip
    variants = [e["data"] for e in experiments if e.get("data")]
    tokens = [d for d in variants if d["params"]["params.yaml"]["data"]["chunking"]["strategy"] == "tokens"]
    assert tokens, shown
    metrics = tokens[0]["metrics"]["metrics/retrieval.json"]["data"]
    assert metrics["chunks"] != baseline["chunks"] and "hybrid" in metrics
