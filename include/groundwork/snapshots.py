"""The DVC registry: every version that goes live is snapshotted, and can be restored.

A registry is a git repository with DVC, created on first use (default:
``<home>/registry`` with a local DVC remote at ``<home>/dvc-remote``; any DVC
remote URL, such as object storage, through ``GROUNDWORK_DVC_REMOTE``). Each
index has one tracked folder, ``<index>/``, holding the snapshotted version's
chunk table (vectors included), manifest, validation report and quarantine
table. A snapshot is ``dvc add`` + ``dvc push`` + ``git commit`` + ``git tag
<index>/<version>``; a restore checks the tag's ``.dvc`` file out, pulls it, and
copies the files out, then puts the workspace back.

Git and DVC commands run as subprocesses, one at a time per registry (a file
lock: DVC fails with "Unable to acquire lock" otherwise). Files in the
workspace are always replaced, never written in place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from groundwork.errors import GroundworkError, NotFoundError
from groundwork.settings import Settings

__all__ = ["SNAPSHOT_FILES", "DvcRegistry", "SnapshotError", "registry_for"]

log = logging.getLogger(__name__)

SNAPSHOT_FILES = ("chunks.parquet", "manifest.json", "validation.json", "quarantine.parquet")
# Runs each argv of a JSON list through DVC's CLI, stopping at the first failure.
_DVC_BATCH = """
import json, sys
from dvc.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
"""
_GIT_ID = ["-c", "user.name=groundwork", "-c", "user.email=groundwork@localhost", "-c", "commit.gpgsign=false"]


class SnapshotError(GroundworkError):
    """A git or DVC command of the registry failed."""


@dataclass(frozen=True)
class Snapshot:
    index: str
    version: str
    tag: str
    revision: str


def registry_for(settings: Settings) -> DvcRegistry:
    remote = os.environ.get("GROUNDWORK_DVC_REMOTE") or str(settings.home / "dvc-remote")
    return DvcRegistry(settings.home / "registry", remote)


class DvcRegistry:
    """A git + DVC repository of snapshots, with one remote."""

    def __init__(self, root: Path, remote: str) -> None:
        self.root = root
        self.remote = remote
        self.lock_path = root.with_name(root.name + ".lock")

    # -- plumbing ---------------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
        cmd = [*args]
        result = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            what = " ".join(a for a in args if not a.startswith("user.") and a != "-c")
            raise SnapshotError(f"`{what}` failed in {self.root}: {(result.stderr or result.stdout).strip()[-800:]}")
        return result

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("git", *_GIT_ID, *args, check=check)

    def _dvc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._dvc_batch(list(args))

    def _dvc_batch(self, *commands: list[str]) -> subprocess.CompletedProcess[str]:
        """DVC commands, in order, in one interpreter: DVC's import costs ~0.5 s per process.

        Each runs through DVC's own CLI entry point (same behaviour and messages as ``dvc ...``);
        the first that fails stops the batch with its exit status.
        """
        argv = [[*cmd, "--quiet"] for cmd in commands]
        return self._run(sys.executable, "-c", _DVC_BATCH, json.dumps(argv))

    @contextmanager
    def locked(self, timeout_s: float = 600) -> Iterator[None]:
        """Hold the registry: git and DVC commands never run two at a time."""
        from filelock import FileLock, Timeout

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise SnapshotError(f"the DVC registry {self.root} stayed busy for {timeout_s:.0f}s") from None
        try:
            self._ensure()
            yield
        finally:
            lock.release()

    def _ensure(self) -> None:
        if (self.root / ".dvc").is_dir() and (self.root / ".git").is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", "--initial-branch=main")
        if "://" not in self.remote:
            Path(self.remote).mkdir(parents=True, exist_ok=True)
        self._dvc_batch(
            ["init"],
            ["remote", "add", "--default", "--force", "storage", self.remote],
            # Never let the workspace share inodes with the cache: a write there would corrupt it.
            ["config", "cache.type", "reflink,copy"],
        )
        (self.root / "README.md").write_text(
            "# groundwork snapshot registry\n\nOne folder per index; one tag `<index>/<version>` per snapshot.\n"
        )
        self._git("add", "-A")
        self._git("commit", "--quiet", "-m", "Create the groundwork snapshot registry")

    # -- snapshots --------------------------------------------------------------------------------

    def tags(self, index: str) -> list[str]:
        with self.locked():
            out = self._git("tag", "--list", f"{index}/*").stdout
        return sorted(line.split("/", 1)[1] for line in out.split() if "/" in line)

    def snapshot(self, index: str, version: str, version_dir: Path, files: Sequence[str] = SNAPSHOT_FILES) -> Snapshot:
        """Record ``version_dir``'s files as ``<index>/<version>``; idempotent for a retried task."""
        tag = f"{index}/{version}"
        with self.locked():
            existing = self._git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", check=False)
            if existing.returncode == 0:
                self._dvc("push", f"{index}.dvc")  # a retry after a failed push
                return Snapshot(index, version, tag, existing.stdout.strip())
            work = self.root / index
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            for name in files:
                source = version_dir / name
                if source.is_file():
                    shutil.copy2(source, work / name)
            # Pushed before the commit: a tag only ever names a snapshot the remote holds.
            self._dvc_batch(["add", index], ["push", f"{index}.dvc"])
            self._git("add", f"{index}.dvc", ".gitignore")
            self._git("commit", "--quiet", "--allow-empty", "-m", f"Snapshot {tag}")
            self._git("tag", tag)
            revision = self._git("rev-parse", "HEAD").stdout.strip()
        log.info("snapshot %s at %s (remote %s)", tag, revision[:12], self.remote)
        return Snapshot(index, version, tag, revision)

    def restore(self, index: str, version: str, dest: Path) -> list[Path]:
        """Copy the files of snapshot ``<index>/<version>`` into ``dest`` (pulled from the remote if needed)."""
        tag = f"{index}/{version}"
        with self.locked():
            found = self._git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}", check=False)
            if found.returncode != 0:
                raise NotFoundError(f"no snapshot {tag} in the registry {self.root}")
            try:
                self._git("checkout", tag, "--", f"{index}.dvc")
                self._dvc("pull", "--force", f"{index}.dvc")
                dest.mkdir(parents=True, exist_ok=True)
                copied = []
                for item in sorted((self.root / index).iterdir()):
                    target = dest / item.name
                    tmp = target.with_name(target.name + ".restore")
                    shutil.copyfile(item, tmp)
                    tmp.replace(target)
                    copied.append(target)
            finally:
                # Put the workspace back on the latest snapshot (pulled: the cache may have been pruned).
                self._git("checkout", "HEAD", "--", f"{index}.dvc")
                try:
                    self._dvc("pull", "--force", f"{index}.dvc")
                except SnapshotError as exc:
                    log.warning("could not put the registry workspace back on HEAD: %s", exc)
        return copied
