"""Benchmark a refresh end to end on a generated corpus: prints figures and ratios, asserts nothing.

Measures, with the real all-MiniLM-L6-v2 on this machine's CPU:

1. full build: chunks per second end to end, and end-to-end time divided by the
   bare ``model.encode`` time on the same chunk texts (goal: <= 1.15);
2. refresh after changing 1% of the documents, as a share of the full build
   (goal: <= 5%);
3. refresh with nothing changed, as a share of the full build (goal: <= 2%);
4. rollback with the collection present, and restore from the DVC snapshot, as a
   share of the full build of the same version (goal: <= 10%);
5. peak memory of a full build at 1x and 4x the corpus, each in a fresh process
   (goal: 4x needs at most 1.5x the memory);
6. int8 dynamic quantization of the model: encode speed-up over fp32, and top-10
   agreement with fp32 on a set of queries: on the generated corpus (word salad over a
   50-word vocabulary: thousands of near-ties, so a hard case for agreement) and on real
   text, groundwork's own documentation with its golden queries, where nDCG@10 of both
   precisions is printed too.

Usage: ``python benchmarks/bench_refresh.py [--docs 1000] [--memory-scales 1,4] [--skip-memory]``
(``make bench`` runs the defaults: about 5,000 chunks; the 4x memory run takes a while).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))

from groundwork.config import IndexConfig, load_index, parse_index  # noqa: E402
from groundwork.embedding import Embedder, load_embedder  # noqa: E402
from groundwork.embedding_cache import EmbeddingCache  # noqa: E402
from groundwork.evaluation import load_golden, query_metrics  # noqa: E402
from groundwork.lifecycle import rollback  # noqa: E402
from groundwork.offline import set_offline_env  # noqa: E402
from groundwork.pipeline import run_index  # noqa: E402
from groundwork.settings import Settings  # noqa: E402
from groundwork.vectorstore import open_client, resolve_target  # noqa: E402
from groundwork.versions import VersionStore  # noqa: E402

VOCAB = (
    "index version chunk vector alias refresh source document model token window page title section "
    "pipeline airflow qdrant snapshot rollback embedding cache batch worker schedule backfill quality "
    "gate expectation manifest registry partition parser table column row query search retrieval answer "
    "grounding data engineer operator config strategy overlap heading payload metadata language"
).split()


def generate_corpus(folder: Path, docs: int, seed: int = 1) -> None:
    """Markdown documents of five sections of ~150 words: about five chunks each."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(docs):
        parts = [f"# Document {i}"]
        for s in range(5):
            words = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(120, 160)))
            parts.append(f"## Section {s} of document {i}\n\n{words.capitalize()}.")
        (folder / f"doc{i:05d}.md").write_text("\n\n".join(parts) + "\n")


def index_config(corpus: Path) -> IndexConfig:
    return parse_index(
        {
            "name": "bench",
            "sources": [{"name": "docs", "type": "files", "path": str(corpus), "languages": ["eng"]}],
            "chunking": {"strategy": "by_title", "max_characters": 1200, "new_after_n_chars": 1000},
            "processing": {"batch_size": 100},
            "retention": {"keep": 3},
        }
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def memory_child(docs: int) -> None:
    """Full build of ``docs`` documents in this (fresh) process; prints peak RSS as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_corpus(root / "corpus", docs)
        settings = Settings(home=root / "data", indexes_dir=root)
        result = run_index(index_config(root / "corpus"), settings)
        print(json.dumps({"docs": docs, "chunks": result.manifest.counts["chunks"]["total"], "peak_mb": peak_rss_mb()}))


def top10_agreement(corpus: np.ndarray, q32: np.ndarray, q8: np.ndarray, c8: np.ndarray) -> float:
    top32 = np.argsort(-(q32 @ corpus.T), axis=1)[:, :10]
    top8 = np.argsort(-(q8 @ c8.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top32, top8, strict=True)]))


def real_text_int8(settings: Settings, fp32: Embedder, int8: Embedder) -> None:
    """int8 against fp32 on groundwork's documentation and its golden queries (include/evaluation)."""
    cfg = load_index(REPO / "include" / "evaluation" / "groundwork_eval.yaml")
    golden = load_golden(REPO / "include" / "evaluation" / "golden.yaml")
    built = run_index(cfg, settings, embedder=fp32, target=resolve_target(cfg.qdrant, settings))
    chunks = VersionStore(settings, cfg.name).chunks_path(built.version)
    table = pq.read_table(chunks, columns=["doc_id", "uri", "text"])
    texts = table.column("text").to_pylist()
    hits = list(zip(table.column("doc_id").to_pylist(), table.column("uri").to_pylist(), strict=True))
    queries = [q.query for q in golden]
    c32, c8 = fp32.encode(texts), int8.encode(texts)
    q32, q8 = fp32.encode(queries), int8.encode(queries)
    agreement = top10_agreement(c32, q32, q8, c8)
    ndcg = {}
    for name, q, c in (("fp32", q32, c32), ("int8", q8, c8)):
        ranked = np.argsort(-(q @ c.T), axis=1)[:, :40]  # chunks; metrics count distinct documents
        pairs = zip(ranked, golden, strict=True)
        per_query = [query_metrics([hits[i] for i in row], g.relevant, 10) for row, g in pairs]
        ndcg[name] = float(np.mean([m["ndcg"] for m in per_query]))
    print(f"   real text ({len(texts)} chunks of include/docs + glossary, {len(queries)} golden queries): "
          f"top-10 agreement {agreement:.1%}; nDCG@10 fp32 {ndcg['fp32']:.3f}, int8 {ndcg['int8']:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="documents in the 1x corpus (about 5 chunks each)")
    parser.add_argument("--memory-scales", default="1,4", help="corpus multiples for the peak-memory runs")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_offline_env()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    root = Path(tempfile.mkdtemp(prefix="groundwork-bench-"))
    try:
        corpus = root / "corpus"
        generate_corpus(corpus, args.docs)
        cfg = index_config(corpus)
        settings = Settings(home=root / "data", indexes_dir=root)
        target = resolve_target(cfg.qdrant, settings)
        print(f"corpus: {args.docs} documents in {corpus}")

        full, t_full = timed(lambda: run_index(cfg, settings, target=target, run_id="full"))
        chunks = full.manifest.counts["chunks"]["total"]
        print(f"\n1. full build: {chunks} chunks in {t_full:.1f} s = {chunks / t_full:.1f} chunks/s end to end")
        print("   stages (s): " + ", ".join(f"{k} {v}" for k, v in full.manifest.timings_s.items()))
        texts = pq.read_table(VersionStore(settings, "bench").chunks_path(full.version), columns=["text"])
        texts_list = texts.column("text").to_pylist()
        embedder = load_embedder(cfg.embedding)
        model = embedder.model  # the bare sentence-transformers model, as a script would call it
        opts = {"batch_size": cfg.embedding.batch_size, "normalize_embeddings": cfg.embedding.normalize}
        model.encode(texts_list[:32], **opts)  # warm up
        vectors, t_encode = timed(lambda: model.encode(texts_list, **opts))
        print(f"   bare model.encode of the same {len(texts_list)} texts: {t_encode:.1f} s "
              f"({len(texts_list) / t_encode:.1f} chunks/s)")  # fmt: skip
        _, t_ours = timed(lambda: embedder.encode(texts_list))
        print(f"   groundwork's encode of them (batches of equal token counts): {t_ours:.1f} s "
              f"= {t_ours / t_encode:.2f} x bare")  # fmt: skip
        print(f"   end-to-end / bare encode = {t_full / t_encode:.2f}  (goal <= 1.15); "
              f"end-to-end / groundwork's encode = {t_full / t_ours:.2f}")  # fmt: skip

        rng = random.Random(2)
        files = sorted(corpus.iterdir())
        for path in rng.sample(files, max(1, len(files) // 100)):
            path.write_text(path.read_text() + "\n\nAn added closing paragraph about the refresh.\n")
        one, t_one = timed(lambda: run_index(cfg, settings, target=target, run_id="one_percent"))
        print(f"\n2. refresh after changing 1% of documents: {t_one:.1f} s = {t_one / t_full:.1%} of the full build"
              f"  (goal <= 5%); embedded {one.manifest.counts['chunks']['embedded']}, "
              f"carried {one.manifest.counts['chunks']['carried']}")  # fmt: skip
        print("   stages (s): " + ", ".join(f"{k} {v}" for k, v in one.manifest.timings_s.items()))

        _, t_none = timed(lambda: run_index(cfg, settings, target=target, run_id="nothing"))
        print(f"\n3. refresh with nothing changed: {t_none:.2f} s = {t_none / t_full:.2%} of the full build"
              "  (goal <= 2%)")  # fmt: skip

        _, t_back = timed(lambda: rollback(cfg, settings, full.version, reason="bench", target=target))
        print(f"\n4. rollback with the collection present: {t_back:.2f} s")
        with open_client(target) as client:
            client.delete_collection(full.published.collection)  # as if pruned
        shutil.rmtree(VersionStore(settings, "bench").version_dir(full.version))
        _, t_restore = timed(lambda: rollback(cfg, settings, full.version, reason="bench restore", target=target))
        print(f"   restore from the DVC snapshot + upload: {t_restore:.1f} s = {t_restore / t_full:.1%} of the full "
              "build (goal <= 10%)")  # fmt: skip

        print("\n6. int8 dynamic quantization")
        q_cfg = cfg.embedding.model_copy(update={"precision": "int8"})
        int8 = load_embedder(q_cfg)
        sample = texts_list[: min(len(texts_list), 1000)]
        int8.encode(sample[:32])
        _, t32 = timed(lambda: embedder.encode(sample))
        c8, t8 = timed(lambda: int8.encode(sample))
        queries = [" ".join(t.split()[3:12]) for t in rng.sample(texts_list, 100)]
        agreement = top10_agreement(vectors[: len(sample)], embedder.encode(queries), int8.encode(queries), c8)
        print(f"   encode {len(sample)} chunks: fp32 {t32:.1f} s, int8 {t8:.1f} s: speed-up x{t32 / t8:.2f}")
        print(f"   generated corpus: top-10 agreement with fp32 over {len(queries)} queries: {agreement:.1%}")
        real_text_int8(settings, embedder, int8)
        del vectors

        if not args.skip_memory:
            print("\n5. peak memory of a full build (fresh process each)")
            peaks = {}
            for scale in (int(s) for s in args.memory_scales.split(",")):
                out = subprocess.run(
                    [sys.executable, __file__, "--memory-child", str(args.docs * scale)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                data = json.loads(out.stdout.strip().splitlines()[-1])
                peaks[scale] = data["peak_mb"]
                print(f"   {scale}x: {data['chunks']} chunks, peak RSS {data['peak_mb']:.0f} MB")
            if len(peaks) > 1:
                lo, hi = min(peaks), max(peaks)
                print(f"   {hi}x / {lo}x memory = {peaks[hi] / peaks[lo]:.2f}  (goal <= 1.5)")
        cache = EmbeddingCache(settings.cache_path)
        print(f"\nembedding cache: {cache.count()} vectors in {settings.cache_path}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
