# entrasync container image: the daemon (`entrasync run`) as a non-root user (UID 10001).
#
#   make image                     # or: docker build -t entrasync .
#   docker run --rm -v /srv/entrasync/etc:/etc/entrasync:ro -v entrasync-data:/var/lib/entrasync entrasync db upgrade
#   docker run -d --name entrasync --restart unless-stopped --read-only --tmpfs /tmp \
#       --cap-drop ALL --security-opt no-new-privileges \
#       -v /srv/entrasync/etc:/etc/entrasync:ro -v entrasync-data:/var/lib/entrasync entrasync
#
# Configuration: /etc/entrasync/entrasync.toml (a volume). State (SQLite store, purge
# exports): /var/lib/entrasync (a volume). Logs: stdout/stderr (JSON lines).
# See README.md, "Run it in a container", and docs/kubernetes.md.
#
# No `# syntax=` line on purpose: it makes BuildKit pull a Dockerfile frontend from the
# registry even when the base image is mirrored. Nothing here needs more than the frontend
# built into the engine (and the legacy builder builds it too).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a wheel of entrasync, installed with its dependencies into a venv ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Dependencies have manylinux wheels (cryptography, psycopg[binary], pydantic-core):
# no compiler is needed.
RUN python -m venv /opt/entrasync \
    && /opt/entrasync/bin/pip install --upgrade pip setuptools wheel

COPY pyproject.toml README.md ./
COPY entrasync ./entrasync
COPY deploy/docker/slim_venv.py ./
# --no-compile: pip would write a .pyc for every module it installs (160 MB, 125 MB of them
# for msgraph-sdk's 16,700 generated modules, of which entrasync imports about a dozen).
# slim_venv.py then compiles only what runs, packs msgraph into a zip archive and runs
# `entrasync demo` once against the built-in emulator (the build fails if it fails).
RUN /opt/entrasync/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/entrasync/bin/pip install --no-compile /wheels/entrasync-*.whl \
    && /opt/entrasync/bin/pip uninstall --yes pip setuptools wheel \
    && /opt/entrasync/bin/python slim_venv.py /opt/entrasync

# ---- runtime ------------------------------------------------------------------------------
# The same base image as the builder, so the venv's interpreter symlinks stay valid.
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="entrasync" \
      org.opencontainers.image.description="Keeps a workforce-analytics license store in line with Microsoft Entra ID"

RUN groupadd --system --gid 10001 entrasync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/entrasync --shell /usr/sbin/nologin entrasync \
    && install -d -m 0755 /etc/entrasync \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/entrasync

COPY --from=builder /opt/entrasync /opt/entrasync
COPY config/entrasync.example.toml /etc/entrasync/entrasync.example.toml

# PYTHONDONTWRITEBYTECODE: the root file system is read-only at run time (and /opt belongs to
# root), so Python could not write a .pyc anyway; the builder compiled what runs.
ENV PATH=/opt/entrasync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENTRASYNC_CONFIG=/etc/entrasync/entrasync.toml

USER 10001:10001
WORKDIR /var/lib/entrasync
VOLUME ["/etc/entrasync", "/var/lib/entrasync"]

# /healthz and /metrics, when daemon.listen = "0.0.0.0:9464" in the config.
EXPOSE 9464

# Runs inside the container, so the default daemon.listen (127.0.0.1:9464) is enough.
# `entrasync healthcheck` exits 0 when /healthz answers 200 (the last successful cycle is at
# most three intervals old), 1 when it answers 503 or does not answer within --timeout, and
# 78 when it cannot read a valid config (it takes daemon.listen from the config; with
# `--url URL` it needs none). Docker counts every non-zero code as a failed check.
HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \
    CMD ["entrasync", "healthcheck"]

ENTRYPOINT ["entrasync"]
CMD ["run"]
