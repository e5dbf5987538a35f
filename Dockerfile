# syntax=docker/dockerfile:1
# letta-exporter container image: two stages, the final one holds only the Python runtime, a
# virtualenv with the exporter and its dependencies, and an unprivileged user. No compiler, no
# pip, no build tools; every dependency installs from wheels.
#
#   docker build -t letta-exporter .            (or: podman build / buildah bud)
#   docker run --rm -p 9813:9813 -e LETTA_BASE_URL=http://letta:8283 letta-exporter
#
# BASE_IMAGE must be a Debian-based image with python3 (>= 3.11) and the venv module; both stages
# use the same one, because the virtualenv links to its interpreter. tests/test_image.py builds
# this file with buildah (substituting a Debian bookworm rootfs for the base when no container
# registry is reachable) and runs the install steps below in a clean virtualenv.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# README.md* : the README is optional for the build (pyproject names it as the long description).
COPY pyproject.toml README.md* ./
COPY exporter/ exporter/
# A regular (non-editable) install of the project; then the installers leave the virtualenv.
RUN python3 -m venv /opt/letta-exporter \
 && /opt/letta-exporter/bin/pip install --only-binary=:all: --no-binary=letta-exporter . \
 && /opt/letta-exporter/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/letta-exporter/bin/letta-exporter --help >/dev/null

FROM ${BASE_IMAGE}
ARG UID=10001
# The base image's own pip/setuptools/wheel are not needed at run time.
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        python3 -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel; \
    fi \
 && groupadd --gid "${UID}" letta-exporter \
 && useradd --no-log-init --uid "${UID}" --gid letta-exporter --no-create-home \
        --home-dir /var/lib/letta-exporter --shell /usr/sbin/nologin letta-exporter \
 && install -d -o "${UID}" -g "${UID}" -m 0750 /var/lib/letta-exporter
COPY --from=build /opt/letta-exporter /opt/letta-exporter
ENV PATH=/opt/letta-exporter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title="letta-exporter" \
      org.opencontainers.image.description="Prometheus metrics and OTLP spans for Letta agent servers" \
      org.opencontainers.image.licenses="Apache-2.0"
# The default --state-path (letta-exporter-state.db) lands in this writable directory; mount a
# volume here to keep the state across restarts.
WORKDIR /var/lib/letta-exporter
USER ${UID}:${UID}
EXPOSE 9813
ENTRYPOINT ["letta-exporter"]
CMD ["run"]
