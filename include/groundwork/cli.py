"""The ``groundwork`` command: the pipeline and its read side, without Airflow.

::

    groundwork indexes                      list the index definitions
    groundwork run INDEX [--source S ...]   refresh an index now (same stages as the DAG)
    groundwork search INDEX "query" [-k N]  top hits from the live version
    groundwork versions INDEX               versions on disk, the live one marked
    groundwork show INDEX [VERSION]         summary of a version (default: the live one)

``--home`` and ``--indexes`` (or ``GROUNDWORK_HOME`` / ``GROUNDWORK_INDEXES``)
choose the data folder and the folder of index files. Errors groundwork
expects (bad config, unreachable source, ...) print one clear message and exit
with status 2; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from groundwork.config import IndexConfig, discover_index_files, load_index
from groundwork.errors import GroundworkError, NotFoundError
from groundwork.settings import Settings, load_settings


def _index(settings: Settings, name: str) -> IndexConfig:
    for path in discover_index_files(settings.indexes_dir):
        if path.stem == name:
            return load_index(path)
    known = [p.stem for p in discover_index_files(settings.indexes_dir)]
    raise NotFoundError(f"no index {name!r} in {settings.indexes_dir}; known: {', '.join(known) or 'none'}")


def cmd_indexes(settings: Settings, _: argparse.Namespace) -> int:
    for path in discover_index_files(settings.indexes_dir):
        cfg = load_index(path)
        print(f"{cfg.name}\t{cfg.schedule or '-'}\t{', '.join(cfg.source_names)}\t{cfg.description}")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.pipeline import run_index, summarize

    cfg = _index(settings, args.index)
    result = run_index(cfg, settings, sources=args.source or None, force=args.force, trigger="cli")
    print(summarize(result.manifest, result.created))
    print(f"live: {result.published.collection} ({result.published.points} points)")
    return 0


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.embedding import load_embedder
    from groundwork.search import search
    from groundwork.vectorstore import open_client, resolve_target

    cfg = _index(settings, args.index)
    embedder = load_embedder(cfg.embedding)
    with open_client(resolve_target(cfg.qdrant, settings)) as client:
        if not client.collection_exists(cfg.name):
            raise NotFoundError(f"index {cfg.name!r} has no live version yet: run `groundwork run {cfg.name}` first")
        hits = search(client, cfg.name, embedder, args.query, args.k)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], indent=2, default=str))
        return 0
    for rank, hit in enumerate(hits, 1):
        p = hit.payload
        where = " > ".join(p.get("heading_path") or []) or p.get("title")
        snippet = " ".join(str(p.get("text", "")).split())[:160]
        print(f"{rank}. {hit.score:.3f}  {p.get('doc_id')}  [{where}]\n     {snippet}")
    return 0


def cmd_versions(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.versions import VersionStore

    cfg = _index(settings, args.index)
    store = VersionStore(settings, cfg.name)
    live = store.live()
    versions = store.versions()
    if not versions:
        print(f"index {cfg.name} has no versions yet")
        return 0
    print("live  version                    trigger   documents  chunks  embedded  created  (gate)")
    for version in versions:
        m = store.manifest(version)
        marker = "*" if live and live.version == version else " "
        gate = m.validation or {}
        verdict = "passed" if gate.get("success") else ("forced" if gate.get("forced") else "rejected")
        docs, chunks = m.counts["documents"], m.counts["chunks"]
        print(
            f"  {marker}   {version}  {m.trigger:<8}  {docs.get('total', 0):>9}  {chunks['total']:>6}"
            f"  {chunks['embedded']:>8}  {m.created_at}  ({verdict if gate else 'not validated'})"
        )
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.pipeline import summarize
    from groundwork.versions import VersionStore

    cfg = _index(settings, args.index)
    store = VersionStore(settings, cfg.name)
    live = store.live()
    version = args.version or (live.version if live else None)
    if version is None:
        raise NotFoundError(f"index {cfg.name!r} has no live version yet: run `groundwork run {cfg.name}` first")
    manifest = store.manifest(version)
    print(summarize(manifest))
    print(f"  collection: {manifest.collection}" + ("  (live)" if live and live.version == version else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groundwork", description="Fresh, validated, reversible RAG indexes.")
    parser.add_argument("--home", help="data folder (default: $GROUNDWORK_HOME or ./data)")
    parser.add_argument("--indexes", help="folder of index YAML files (default: $GROUNDWORK_INDEXES)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("indexes", help="list index definitions").set_defaults(func=cmd_indexes)
    run = sub.add_parser("run", help="refresh an index now")
    run.add_argument("index")
    run.add_argument("--source", action="append", help="only this source (repeatable)")
    run.add_argument("--force", action="store_true", help="re-process every document")
    run.set_defaults(func=cmd_run)
    find = sub.add_parser("search", help="query the live version of an index")
    find.add_argument("index")
    find.add_argument("query")
    find.add_argument("-k", type=int, default=5, help="number of hits")
    find.add_argument("--json", action="store_true", help="print hits as JSON")
    find.set_defaults(func=cmd_search)
    versions = sub.add_parser("versions", help="list an index's versions")
    versions.add_argument("index")
    versions.set_defaults(func=cmd_versions)
    show = sub.add_parser("show", help="summary of the live version (or of VERSION)")
    show.add_argument("index")
    show.add_argument("version", nargs="?")
    show.set_defaults(func=cmd_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from groundwork.offline import set_offline_env

    set_offline_env()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(args.home, args.indexes)
    try:
        return int(args.func(settings, args))
    except GroundworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
