"""The ``groundwork`` command: the pipeline and its read side, without Airflow.

::

    groundwork indexes                      list the index definitions
    groundwork run INDEX [--source S ...]   refresh an index now (same stages as the DAG)
    groundwork search INDEX "query" [-k N]  top hits from the live version
    groundwork versions INDEX               versions on disk, the live one marked
    groundwork show INDEX [VERSION]         summary of a version (default: the live one)
    groundwork diff INDEX V1 V2             config, documents and chunks that differ
    groundwork eval INDEX [--version V]     retrieval metrics on the index's golden queries
    groundwork experiment STAGE ...         a stage of the DVC experiment pipeline (dvc.yaml)
    groundwork rollback INDEX VERSION --reason ...   make VERSION live again, without re-embedding
    groundwork unpin INDEX                  refreshes follow the index file again after a rollback

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
    result = run_index(
        cfg, settings, sources=args.source or None, force=args.force, force_reason=args.force_publish, trigger="cli"
    )
    print(summarize(result.manifest, result.created, result.skipped))
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
        hits = search(client, cfg.name, embedder, args.query, args.k, mode=args.mode or cfg.search_mode)
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
    from groundwork.lifecycle import read_pin
    from groundwork.vectorstore import open_client, resolve_target
    from groundwork.versions import VersionStore

    cfg = _index(settings, args.index)
    store = VersionStore(settings, cfg.name)
    live = store.live()
    versions = store.versions()
    if not versions:
        print(f"index {cfg.name} has no versions yet")
        return 0
    with open_client(resolve_target(cfg.qdrant, settings)) as client:
        collections = {c.name for c in client.get_collections().collections}
    header = f"{'':1} {'version':<26} {'trigger':<9} {'config':<28} {'docs':>6} {'chunks':>7} {'embedded':>8}"
    print(f"{header}  {'gate':<9} {'collection':<10} snapshot")
    for version in versions:
        m = store.manifest(version)
        marker = "*" if live and live.version == version else " "
        gate = m.validation or {}
        verdict = "passed" if gate.get("success") else ("forced" if gate.get("forced") else "rejected")
        chunking = m.effective_config.get("chunking", {})
        summary = f"{chunking.get('strategy')}/{chunking.get('max_characters') or chunking.get('max_tokens')}"
        summary += f" {str(m.effective_config.get('embedding', {}).get('model', ''))[:12]}"
        docs, chunks = m.counts["documents"], m.counts["chunks"]
        kept = "present" if m.collection in collections else "pruned"
        snap = (m.snapshot or {}).get("tag", "-")
        print(
            f"{marker} {version:<26} {m.trigger:<9} {summary:<28} {docs.get('total', 0):>6} {chunks['total']:>7}"
            f" {chunks['embedded']:>8}  {verdict if gate else 'unchecked':<9} {kept:<10} {snap}"
        )
    pin = read_pin(settings, cfg.name)
    if pin:
        print(f"pinned to {pin['version']}'s config since a rollback ({pin['reason']}); `groundwork unpin {cfg.name}`")
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from groundwork.embedding import load_embedder
    from groundwork.evaluation import QdrantSearcher, TableSearcher, evaluate, load_golden
    from groundwork.vectorstore import open_client, resolve_target
    from groundwork.versions import VersionStore

    cfg = _index(settings, args.index)
    golden_path = Path(args.golden) if args.golden else cfg.evaluation.golden
    if golden_path is None:
        raise NotFoundError(f"index {cfg.name!r} has no evaluation.golden file; pass --golden FILE")
    golden = load_golden(golden_path)
    mode, k = args.mode or cfg.evaluation.mode, args.k or cfg.evaluation.k
    embedder = load_embedder(cfg.embedding)
    store = VersionStore(settings, cfg.name)
    if args.version and not args.collection:
        report = evaluate(TableSearcher(store.chunks_path(args.version), embedder, mode), golden, k, mode)
        where = f"version {args.version} (chunk table, exact search)"
    else:
        with open_client(resolve_target(cfg.qdrant, settings)) as client:
            name = args.collection or cfg.name
            report = evaluate(QdrantSearcher(client, name, embedder, mode), golden, k, mode)
        where = f"Qdrant collection/alias {name}"
    print(f"{cfg.name}: {len(golden)} golden queries against {where}, mode {mode}")
    for metric, value in report.metrics.items():
        print(f"  {metric}@{k}: {value:.3f}")
    return 0


def cmd_experiment(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from groundwork import experiments

    params = Path(args.params)
    if args.stage == "chunk":
        result = experiments.chunk_stage(params, Path(args.out))
    elif args.stage == "embed":
        result = experiments.embed_stage(params, Path(args.input), Path(args.out), settings)
    else:
        result = experiments.evaluate_stage(params, Path(args.input), Path(args.out))
    print(json.dumps(result, sort_keys=True))
    return 0


def cmd_diff(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.diffing import diff_versions

    cfg = _index(settings, args.index)
    print(diff_versions(settings, cfg.name, args.old, args.new).describe())
    return 0


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.lifecycle import rollback
    from groundwork.vectorstore import resolve_target

    cfg = _index(settings, args.index)
    result = rollback(cfg, settings, args.version, reason=args.reason, target=resolve_target(cfg.qdrant, settings))
    how = "restored from its DVC snapshot" if result.restored_from_snapshot else "its collection was still there"
    print(f"{cfg.name}: live {result.from_version} -> {result.to_version} ({how}; {result.points} points, "
          f"{result.seconds}s); refreshes keep its config until `groundwork unpin {cfg.name}`")  # fmt: skip
    return 0


def cmd_unpin(settings: Settings, args: argparse.Namespace) -> int:
    from groundwork.lifecycle import clear_pin

    cfg = _index(settings, args.index)
    print("pin cleared" if clear_pin(settings, cfg.name) else f"index {cfg.name} is not pinned")
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
    run.add_argument("--force-publish", metavar="REASON", help="publish past a failed quality gate, for this reason")
    run.set_defaults(func=cmd_run)
    find = sub.add_parser("search", help="query the live version of an index")
    find.add_argument("index")
    find.add_argument("query")
    find.add_argument("-k", type=int, default=5, help="number of hits")
    find.add_argument("--json", action="store_true", help="print hits as JSON")
    find.add_argument("--mode", choices=["dense", "hybrid"], help="default: the index's search_mode")
    find.set_defaults(func=cmd_search)
    versions = sub.add_parser("versions", help="list an index's versions")
    versions.add_argument("index")
    versions.set_defaults(func=cmd_versions)
    ev = sub.add_parser("eval", help="retrieval metrics on golden queries (hit@k, recall@k, MRR, nDCG@k)")
    ev.add_argument("index")
    ev.add_argument("--golden", help="golden query file (default: the index's evaluation.golden)")
    ev.add_argument("--version", help="evaluate this version's chunk table instead of the live alias")
    ev.add_argument("--collection", help="evaluate this Qdrant collection or alias")
    ev.add_argument("--mode", choices=["dense", "hybrid"])
    ev.add_argument("-k", type=int)
    ev.set_defaults(func=cmd_eval)
    exp = sub.add_parser("experiment", help="a stage of the DVC experiment pipeline (see dvc.yaml)")
    exp.add_argument("stage", choices=["chunk", "embed", "evaluate"])
    exp.add_argument("--params", default="params.yaml")
    exp.add_argument("--input", help="embed: chunks.parquet; evaluate: embedded.parquet")
    exp.add_argument("--out", required=True)
    exp.set_defaults(func=cmd_experiment)
    diff = sub.add_parser("diff", help="config, documents and chunks that differ between two versions")
    diff.add_argument("index")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.set_defaults(func=cmd_diff)
    back = sub.add_parser("rollback", help="make an earlier version live again (no re-embedding)")
    back.add_argument("index")
    back.add_argument("version")
    back.add_argument("--reason", required=True, help="why (written to the audit log)")
    back.set_defaults(func=cmd_rollback)
    unpin = sub.add_parser("unpin", help="let refreshes use the index file's config again after a rollback")
    unpin.add_argument("index")
    unpin.set_defaults(func=cmd_unpin)
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
