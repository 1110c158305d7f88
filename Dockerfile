# Verifily Train: the CLI and the GitHub Action. Three targets, same steps, different base and lock file:
#   comment: slim Python base, no torch/transformers/peft/datasets: the workflow_run comment job (comment/action.yml)
#            and `verifily compare`; docker/requirements-comment.lock (the cpu lock's versions, ML stack left out).
#   cpu: slim Python base, torch's CPU build (GitHub-hosted runners, small classification jobs; action.yml).
#   cuda (default, the last stage): NVIDIA CUDA runtime base, PyPI's CUDA torch build, bitsandbytes (QLoRA;
#         self-hosted GPU runners, gpu/action.yml).
# The actions pull these prebuilt from ghcr.io (.github/workflows/image.yml pushes them on release tags).
#
#   docker build -t verifily:cpu --target cpu .
#   docker run --rm -v "$PWD:/github/workspace" -w /github/workspace verifily:cpu train --config train.yaml
#
# Dependencies come from hash-pinned lock files (docker/requirements-<target>.lock, `pip install --require-hashes
# --no-deps`; regenerate with `python docker/lock.py`). A lock not committed yet (the cuda one needs PyPI's CUDA wheels
# to make) is resolved during the build with the committed cpu lock's versions. When the build context holds
# docker/wheelhouse/ (docker/wheelhouse.sh), the build installs from it without network. No secrets are baked in:
# proxy variables are Docker's predefined build args (kept out of the image), tokens arrive at run time
# (INPUT_GITHUB-TOKEN, GITHUB_TOKEN).
#
# Three stages a target: <t>-deps installs the lock into /opt/venv (pip runs from a build-only venv, /opt/build) and
# drops what no run reads (tests, headers, bytecode of modules no run imports); <t>-app builds and installs the
# package under /opt/app; <t> copies the two onto a fresh base, so the image has no pip, no setuptools, no caches.
#
# GitHub's rules for container actions: no USER (the action runs as root), no WORKDIR (the runner mounts the
# workspace at /github/workspace and makes it the working directory), absolute exec-form ENTRYPOINT.
# GPUs on self-hosted runners: docs/self-hosted-runners.md (README.md, section 'Self-hosted GPU runners', links it).

ARG CPU_BASE=python:3.11-slim-bookworm
ARG CUDA_BASE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

# ------------------------------------------------------------------------------------------------------ comment
# First: the legacy builder builds every stage before the target, and this one is small. Same steps as cpu (a unit
# test compares the three targets, tests/test_dockerfile.py); the lock has no ML stack.
FROM ${CPU_BASE} AS comment-deps
# The lock files present (a missing one is resolved by install-deps.sh with lock.py, which reads pyproject.toml)
COPY docker/install-python.sh docker/install-deps.sh docker/lock.py docker/requirements-*.lock /tmp/build/docker/
COPY pyproject.toml /tmp/build/
# the optional wheelhouse (docker/wheelhouse.sh); naming install-deps.sh too gives this COPY a source when there is none
COPY docker/install-deps.sh docker/wheelhouse* /tmp/build/docker/wheelhouse/
RUN sh /tmp/build/docker/install-python.sh \
 && sh /tmp/build/docker/install-deps.sh /tmp/build/docker/requirements-comment.lock \
 && rm -rf /tmp/build

FROM comment-deps AS comment-app
COPY docker/install-app.sh pyproject.toml README.md /tmp/build/src/
COPY schemas/ /tmp/build/src/schemas/
COPY verifily_action/ /tmp/build/src/verifily_action/
RUN sh /tmp/build/src/install-app.sh /tmp/build/src /opt/app

FROM ${CPU_BASE} AS comment
ARG CPU_BASE
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
COPY docker/install-python.sh /tmp/install-python.sh
RUN sh /tmp/install-python.sh && rm /tmp/install-python.sh
COPY --from=comment-deps /opt/venv /opt/venv
# the package last, in its own small layer: a code change rebuilds neither the dependencies nor their copy
COPY --from=comment-app /opt/app/ /
COPY entrypoint.py /app/entrypoint.py
RUN ["/opt/venv/bin/verifily", "--version"]
LABEL org.opencontainers.image.title="verifily-train" \
      org.opencontainers.image.description="Dataset-version-aware LoRA fine-tuning with sliced evaluation and PR comparisons (CLI and GitHub Action)" \
      org.opencontainers.image.source="https://github.com/verifily/verifily-train" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${CPU_BASE}" \
      io.verifily.image.target="comment"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    VERIFILY_IMAGE_TARGET=comment
VOLUME ["/cache/huggingface", "/github/workspace"]
ENTRYPOINT ["/opt/venv/bin/python", "/app/entrypoint.py"]

# ---------------------------------------------------------------------------------------------------------- cpu
FROM ${CPU_BASE} AS cpu-deps
# The lock files present (a missing one is resolved by install-deps.sh with lock.py, which reads pyproject.toml)
COPY docker/install-python.sh docker/install-deps.sh docker/lock.py docker/requirements-*.lock /tmp/build/docker/
COPY pyproject.toml /tmp/build/
# the optional wheelhouse (docker/wheelhouse.sh); naming install-deps.sh too gives this COPY a source when there is none
COPY docker/install-deps.sh docker/wheelhouse* /tmp/build/docker/wheelhouse/
RUN sh /tmp/build/docker/install-python.sh \
 && sh /tmp/build/docker/install-deps.sh /tmp/build/docker/requirements-cpu.lock \
 && rm -rf /tmp/build

FROM cpu-deps AS cpu-app
COPY docker/install-app.sh pyproject.toml README.md /tmp/build/src/
COPY schemas/ /tmp/build/src/schemas/
COPY verifily_action/ /tmp/build/src/verifily_action/
RUN sh /tmp/build/src/install-app.sh /tmp/build/src /opt/app

FROM ${CPU_BASE} AS cpu
ARG CPU_BASE
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
COPY docker/install-python.sh /tmp/install-python.sh
RUN sh /tmp/install-python.sh && rm /tmp/install-python.sh
COPY --from=cpu-deps /opt/venv /opt/venv
# the package last, in its own small layer: a code change rebuilds neither the dependencies nor their copy
COPY --from=cpu-app /opt/app/ /
COPY entrypoint.py /app/entrypoint.py
RUN ["/opt/venv/bin/verifily", "--version"]
LABEL org.opencontainers.image.title="verifily-train" \
      org.opencontainers.image.description="Dataset-version-aware LoRA fine-tuning with sliced evaluation and PR comparisons (CLI and GitHub Action)" \
      org.opencontainers.image.source="https://github.com/verifily/verifily-train" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${CPU_BASE}" \
      io.verifily.image.target="cpu"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    VERIFILY_IMAGE_TARGET=cpu
VOLUME ["/cache/huggingface", "/github/workspace"]
ENTRYPOINT ["/opt/venv/bin/python", "/app/entrypoint.py"]

# --------------------------------------------------------------------------------------------------------- cuda
# Same steps as cpu; only the base, the lock file (CUDA torch + bitsandbytes) and the names differ. Keep it last: it
# is the default target. The nvidia/cuda base sets NVIDIA_VISIBLE_DEVICES=all and
# NVIDIA_DRIVER_CAPABILITIES=compute,utility for NVIDIA's container runtime.
FROM ${CUDA_BASE} AS cuda-deps
# The lock files present (a missing one is resolved by install-deps.sh with lock.py, which reads pyproject.toml)
COPY docker/install-python.sh docker/install-deps.sh docker/lock.py docker/requirements-*.lock /tmp/build/docker/
COPY pyproject.toml /tmp/build/
# the optional wheelhouse (docker/wheelhouse.sh); naming install-deps.sh too gives this COPY a source when there is none
COPY docker/install-deps.sh docker/wheelhouse* /tmp/build/docker/wheelhouse/
RUN sh /tmp/build/docker/install-python.sh \
 && sh /tmp/build/docker/install-deps.sh /tmp/build/docker/requirements-cuda.lock \
 && rm -rf /tmp/build

FROM cuda-deps AS cuda-app
COPY docker/install-app.sh pyproject.toml README.md /tmp/build/src/
COPY schemas/ /tmp/build/src/schemas/
COPY verifily_action/ /tmp/build/src/verifily_action/
RUN sh /tmp/build/src/install-app.sh /tmp/build/src /opt/app

FROM ${CUDA_BASE} AS cuda
ARG CUDA_BASE
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
COPY docker/install-python.sh /tmp/install-python.sh
RUN sh /tmp/install-python.sh && rm /tmp/install-python.sh
COPY --from=cuda-deps /opt/venv /opt/venv
# the package last, in its own small layer: a code change rebuilds neither the dependencies nor their copy
COPY --from=cuda-app /opt/app/ /
COPY entrypoint.py /app/entrypoint.py
RUN ["/opt/venv/bin/verifily", "--version"]
LABEL org.opencontainers.image.title="verifily-train" \
      org.opencontainers.image.description="Dataset-version-aware LoRA fine-tuning with sliced evaluation and PR comparisons (CLI and GitHub Action)" \
      org.opencontainers.image.source="https://github.com/verifily/verifily-train" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${CUDA_BASE}" \
      io.verifily.image.target="cuda"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    VERIFILY_IMAGE_TARGET=cuda
VOLUME ["/cache/huggingface", "/github/workspace"]
ENTRYPOINT ["/opt/venv/bin/python", "/app/entrypoint.py"]
