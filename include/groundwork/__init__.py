"""groundwork: fresh, validated, reversible grounding data for RAG.

The core package. It never imports Airflow; DAGs call it. Importing this
package is cheap: heavy libraries (unstructured, torch) load only inside the
functions that need them.

Modules, in the order of a refresh: :mod:`~groundwork.config` (index files),
:mod:`~groundwork.sources` (discovery), :mod:`~groundwork.planning` (diff and
batches), :mod:`~groundwork.partition`, :mod:`~groundwork.chunking`,
:mod:`~groundwork.enrichment`, :mod:`~groundwork.embedding` and
:mod:`~groundwork.embedding_cache`, :mod:`~groundwork.processing` (one batch),
:mod:`~groundwork.assembly` (the candidate version),
:mod:`~groundwork.publishing` and :mod:`~groundwork.vectorstore` (Qdrant),
:mod:`~groundwork.versions` (layout on disk), :mod:`~groundwork.pipeline`
(all stages in one process) and :mod:`~groundwork.cli`.
"""

__version__ = "0.1.0"
