# The groundwork image: the official Airflow 3.3 image with groundwork and its pinned dependencies.
#
#   docker compose build            (docker-compose.yaml builds it as ${GROUNDWORK_IMAGE})
#
# dags/, plugins/ and the index YAMLs are mounted by docker-compose.yaml, not baked in: editing an
# index file or a DAG needs no rebuild. A dependency change does (requirements.lock, pyproject.toml).
FROM apache/airflow:3.3.2-python3.11

# git: the DVC snapshot registry is a git repository.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && apt-get autoremove -yqq --purge \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /opt/groundwork/data /opt/groundwork/dvc-remote /opt/groundwork/include \
 && chown -R airflow:0 /opt/groundwork
USER airflow

# torch 2.13.0 from PyPI is the CUDA build (several GB): CPU workers take PyTorch's CPU wheel index,
# GPU workers build with --build-arg TORCH_INDEX_URL=<a CUDA wheel index> (or an empty value for PyPI's).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# --no-deps, as everywhere groundwork is installed: requirements.lock is the complete tested set
# (see its header: unstructured-inference's declared dependencies would pull torchvision, which breaks
# torch 2.13). The lock pins apache-airflow 3.3.2, the version of this base image.
COPY --chown=airflow:0 requirements.lock /opt/groundwork/requirements.lock
RUN pip install --no-cache-dir --no-deps ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
      -r /opt/groundwork/requirements.lock

# The package itself (groundwork and groundwork_airflow), not editable: the image does not need the sources.
COPY --chown=airflow:0 pyproject.toml README.md /opt/groundwork/src/
COPY --chown=airflow:0 include/groundwork /opt/groundwork/src/include/groundwork
COPY --chown=airflow:0 include/groundwork_airflow /opt/groundwork/src/include/groundwork_airflow
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/groundwork/src \
 && python -c "import groundwork, groundwork_airflow, airflow.providers.celery" \
 && rm -rf /opt/groundwork/src

ENV GROUNDWORK_HOME=/opt/groundwork/data \
    GROUNDWORK_INDEXES=/opt/groundwork/include/indexes \
    GROUNDWORK_DVC_REMOTE=/opt/groundwork/dvc-remote \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DO_NOT_TRACK=true \
    SCARF_NO_ANALYTICS=true \
    DVC_NO_ANALYTICS=1
