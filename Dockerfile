# syntax=docker/dockerfile:1
# One image for every agent of a hive: `python -m agent_runtime`, configured entirely by
# AMPLIHACK_* variables (deploy/azure/main.bicep sets them per container):
#   AMPLIHACK_HIVE, AMPLIHACK_AGENT_NAME    which agent of which hive this container runs
#   AMPLIHACK_HIVE_CONFIG                   the hive's config.yaml text, without its secret
#   AMPLIHACK_MEMORY_CONNECTION_STRING      the broker's connection string (a platform secret)
#   AMPLIHACK_HEALTH_PORT                   the HTTP readiness endpoint (default 8080)
# Build:  docker build -t amplihack-hive:0.1.0 .
# PIP_EXTRAS selects optional dependencies: the Azure SDKs of the azure_* transports, and
# the model of `semantic: true` (on in every hive `create` made where the extra is installed;
# an agent of such a hive refuses to start without it).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/amplihack-hive
# Only what the package build needs (see .dockerignore): a code change rebuilds one layer.
COPY pyproject.toml README.md ./
COPY hive_core ./hive_core
COPY agent_runtime ./agent_runtime
COPY hive_cli ./hive_cli
ARG PIP_EXTRAS="[azure,semantic]"
RUN pip install ".${PIP_EXTRAS}" \
    && rm -rf build ./*.egg-info

# The agent never runs as root. /data is its only writable place: the hive's shards (Kuzu),
# logs and state live under AMPLIHACK_HOME=/data/home. In Azure /data is an EmptyDir (Kuzu
# needs POSIX locks, which Azure Files lacks); a lost shard is restored by replication.
RUN groupadd --system --gid 10001 hive \
    && useradd --system --uid 10001 --gid hive --home-dir /data/home --no-create-home \
       --shell /usr/sbin/nologin hive \
    && mkdir -p /data/home \
    && chown -R hive:hive /data \
    && chmod 0700 /data/home

ENV AMPLIHACK_HOME=/data/home \
    AMPLIHACK_HEALTH_PORT=8080 \
    AMPLIHACK_LOG_LEVEL=INFO

VOLUME /data
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# Ready = the agent's shard is open and it serves its inbox (agent_runtime.health).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "agent_runtime.health"]

ENTRYPOINT ["python", "-m", "agent_runtime"]
