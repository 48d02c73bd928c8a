# syntax=docker/dockerfile:1
# The cio-relay image: `cio-relay run` (API, webhooks, dashboard, metrics and workers) by default,
# `cio-relay worker` (delivery only) as the alternative command. docs/configuration.md explains
# the environment it expects.
#
# No container engine runs where the tests run, so tests/deploy/test_image.py replays the build
# stage in a fresh venv (its ARG, ENV, WORKDIR, COPY and RUN steps, in order) and starts the
# result with this file's ENV, ENTRYPOINT and CMD to /readyz, then runs the HEALTHCHECK command.
# Keep the build stage to those instructions; the test refuses any other.

FROM python:3.11.13-slim-bookworm AS build

# The extras the image serves with: every backend the deployments use, never `dev`.
ARG CIO_RELAY_EXTRAS=all,bigquery
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies in their own layer, rebuilt only when pyproject.toml or the pinned versions
# (image-constraints.txt) change: placeholders for the package and its README let pip resolve
# the project's extras before the source is copied in.
COPY pyproject.toml image-constraints.txt ./
RUN mkdir -p src/cio_relay \
    && touch src/cio_relay/__init__.py README.md \
    && pip install --constraint image-constraints.txt ".[${CIO_RELAY_EXTRAS}]" \
    && pip uninstall --yes cio-relay

# The package itself: a wheel built from the source, its dependencies already in place.
COPY README.md ./
COPY src ./src
RUN pip install --no-deps .


FROM python:3.11.13-slim-bookworm

# A fixed numeric uid, so that a runtime that only allows non-root users can check it.
RUN groupadd --system --gid 10001 cio-relay \
    && useradd --system --no-log-init --uid 10001 --gid cio-relay \
        --home-dir /var/lib/cio-relay --create-home --shell /usr/sbin/nologin cio-relay

COPY --from=build /opt/venv /opt/venv

# All interfaces inside the container (the published port decides who reaches it); the data
# directory (SQLite outbox, webhook inbox, Parquet lake) belongs to the unprivileged user.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CIO_RELAY_HOST=0.0.0.0 \
    CIO_RELAY_PORT=8080 \
    CIO_RELAY_DATA_DIR=/var/lib/cio-relay/data
WORKDIR /var/lib/cio-relay
USER 10001:10001
EXPOSE 8080

# The slim base has no curl: the image's own Python asks /healthz (liveness, no credentials).
# A `worker` container serves no HTTP: compose.yaml turns this check off for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CIO_RELAY_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["cio-relay"]
CMD ["run"]
