# Outpost container image.
#
# Two stages: the first builds a virtual environment from the project's
# pinned wheels, the second copies only that environment onto a slim base,
# so the running image has no compiler and no build tools. The process runs
# as the fixed user 10001 under tini, which forwards SIGTERM and SIGHUP to
# Outpost and reaps its worker processes. The image writes only to
# /var/lib/outpost (state, a volume) and /tmp (metric files and the pid
# file, a tmpfs), so it runs with a read-only root filesystem.

FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
RUN python -m venv /opt/outpost
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/outpost/bin/pip install --no-cache-dir . \
    && find /opt/outpost -name '__pycache__' -prune -exec rm -rf {} +


FROM python:3.11.14-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 outpost \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/outpost --shell /usr/sbin/nologin outpost \
    && mkdir -p /var/lib/outpost /etc/outpost/providers \
    && chown 10001:10001 /var/lib/outpost

COPY --from=build /opt/outpost /opt/outpost
COPY examples/providers /etc/outpost/providers
COPY examples/hosts.yaml /etc/outpost/hosts.yaml

ENV PATH=/opt/outpost/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OUTPOST_HOST=0.0.0.0 \
    OUTPOST_PORT=8080 \
    OUTPOST_PROVIDERS=/etc/outpost/providers \
    OUTPOST_HOSTS=/etc/outpost/hosts.yaml \
    OUTPOST_STATE_FILE=/var/lib/outpost/state.db \
    OUTPOST_PID_FILE=/tmp/outpost.pid \
    OUTPOST_METRICS_DIR=/tmp/outpost-metrics

USER 10001:10001
WORKDIR /var/lib/outpost
VOLUME ["/var/lib/outpost"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OUTPOST_PORT', '8080'), timeout=2)"]

ENTRYPOINT ["tini", "--", "outpost"]
CMD ["serve"]
