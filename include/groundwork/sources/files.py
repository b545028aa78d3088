"""File sources: list a folder's documents and hash their bytes.

Only files under the source folder are listed: symlinks that resolve outside it
are skipped (never followed), as are files of a type unstructured cannot
partition here and files over the size limit. Hashing streams the bytes, so a
large file costs I/O, not memory. Parsing happens later, in
:mod:`groundwork.partition`.

With ``time_partition`` and a run's window, every file is still listed (names
and sizes: the listing says which documents exist) but only the files of the
window are hashed and returned: by modification time, or by the date that the
configured pattern finds in the path (a path without one is read every run).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from groundwork.documents import SourceDocument
from groundwork.errors import SourceError
from groundwork.source_config import FILE_SUFFIXES, FileSourceConfig, FileTimePartition
from groundwork.sources import Discovery
from groundwork.sources.skipped import Skipped
from groundwork.sources.window import TimeWindow

_HASH_BLOCK = 1 << 20


def _zero_folder_variants(pattern: str) -> set[str]:
    """``**/`` in a glob also matches no folder at all (``**/drafts/*`` matches ``drafts/a.md``)."""
    first, *rest = pattern.split("**/")
    variants = {first}
    for piece in rest:
        variants = {v + sep + piece for v in variants for sep in ("**/", "")}
    return variants


def _candidates(cfg: FileSourceConfig, root: Path) -> Iterator[Path]:
    seen: set[Path] = set()
    excludes = {variant for ex in cfg.exclude for variant in _zero_folder_variants(ex)}
    for pattern in cfg.include:
        for path in sorted(root.glob(pattern)):
            if path in seen:
                continue
            seen.add(path)
            rel = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatch(rel, ex) for ex in excludes):
                continue
            yield path


def _salt(cfg: FileSourceConfig) -> bytes:
    """Partition settings that change the result become part of each file's hash."""
    return json.dumps({"pdf": cfg.pdf_strategy, "languages": cfg.languages}, sort_keys=True).encode()


def file_hash(path: Path, salt: bytes = b"") -> str:
    digest = hashlib.sha256(salt)
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def path_time(partition: FileTimePartition, rel: str) -> datetime | None:
    """The UTC time the partition pattern finds in a relative path, or None (no match, or not a date)."""
    assert partition.pattern is not None
    match = re.search(partition.pattern, rel)
    if match is None or match.group("date") is None:
        return None
    try:
        stamp = datetime.strptime(match.group("date"), partition.format)
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _in_window(partition: FileTimePartition, window: TimeWindow, rel: str, mtime: float) -> bool:
    if partition.by == "modified":
        return window.contains(datetime.fromtimestamp(mtime, tz=UTC))
    stamp = path_time(partition, rel)
    return stamp is None or window.contains(stamp)


def discover_files(cfg: FileSourceConfig, window: TimeWindow | None = None) -> Discovery:
    root = cfg.path
    if not root.is_dir():
        raise SourceError(f"source {cfg.name!r}: folder {root} does not exist or is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SourceError(f"source {cfg.name!r}: folder {root} is not readable")
    real_root = root.resolve()
    partition = cfg.time_partition if window is not None else None
    existing: set[str] = set()
    found = Discovery(source=cfg.name, windowed=partition is not None, existing=existing if partition else None)
    salt = _salt(cfg)
    limit = int(cfg.max_file_mb * 1024 * 1024)
    for path in _candidates(cfg, root):
        uri = str(path)
        skip = _reason_to_skip(path, real_root, limit)
        if skip is None and not path.is_file():
            continue  # folders matched by a pattern
        if skip is not None:
            found.skipped.append(Skipped(cfg.name, uri, skip[0], skip[1]))
            continue
        rel = path.relative_to(root).as_posix()
        doc_id = f"{cfg.name}:{rel}"
        try:
            stat = path.stat()
            if partition is not None and window is not None:
                existing.add(doc_id)
                if not _in_window(partition, window, rel, stat.st_mtime):
                    continue
            digest = file_hash(path, salt)
        except OSError as exc:
            found.skipped.append(Skipped(cfg.name, uri, type(exc).__name__, str(exc)))
            continue
        found.documents.append(
            SourceDocument(
                doc_id=doc_id,
                source=cfg.name,
                uri=uri,
                title=path.stem,
                content_hash=digest,
                kind="file",
                modified_at=datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(),
                path=uri,
                language=cfg.languages[0] if cfg.languages and len(cfg.languages) == 1 else None,
            )
        )
    return found


def _reason_to_skip(path: Path, real_root: Path, limit: int) -> tuple[str, str] | None:
    # Resolve every path, not only symlinks: a pattern such as ``*/*.md`` also
    # lists files through a symlinked folder that points elsewhere.
    target = path.resolve()
    if not target.is_relative_to(real_root):
        return ("SymlinkOutsideSource", f"symlink points outside the source folder ({target}); not followed")
    if path.is_symlink() and not path.exists():
        return ("BrokenSymlink", f"symlink target {target} does not exist")
    if not path.is_file():
        return None
    if path.suffix.lower() not in FILE_SUFFIXES:
        return ("UnsupportedFileType", f"{path.suffix or 'no extension'} is not a supported document type")
    size = path.stat().st_size
    if size == 0:
        return ("EmptyFile", "the file is empty (0 bytes)")
    if size > limit:
        return ("FileTooLarge", f"{size} bytes is over the source's max_file_mb")
    return None
