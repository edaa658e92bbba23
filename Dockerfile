# syntax=docker/dockerfile:1
# The kubefuncs image: the function runtime (python -m kubefuncs module:function), the
# gateway (python -m kubefuncs.gateway, the default command) and functl, plus the example
# functions under /app/example. Build from the repository root:
#
#   docker build -t ghcr.io/kubefuncs/kubefuncs:0.1.0 .
#
# Both stages use the same base image: the virtualenv copied into the final stage points
# at the base image's /usr/local/bin/python3.11.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/kubefuncs

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /src

# Dependencies first, from the lock file: this layer is reused until they change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --extra otel --no-install-project --no-editable

# Then the package itself, installed (not editable) into the same virtualenv, byte-compiled
# here because the containers run with a read-only root filesystem.
# README.m[d]: the package metadata's long description, optional (a glob that matches
# nothing does not fail the build)
COPY pyproject.toml README.m[d] ./
COPY client/ client/
COPY gateway/ gateway/
COPY functl/ functl/
RUN uv sync --frozen --no-dev --extra otel --no-editable


FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="kubefuncs" \
      org.opencontainers.image.description="Message-bus-centric functions for Kubernetes: runtime, gateway and functl" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed non-root user (the charts and functl run pods as uid/gid 10001), and no pip or
# setuptools in the final image: nothing is installed at run time.
RUN groupadd --system --gid 10001 kubefuncs \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kubefuncs \
    && python -m pip uninstall --yes --quiet pip setuptools wheel

COPY --from=builder /opt/kubefuncs /opt/kubefuncs
COPY example/ /app/example/

ENV PATH=/opt/kubefuncs/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
USER 10001:10001

# 8080: gateway HTTP; 8081: a function's /healthz, /readyz and /metrics
EXPOSE 8080 8081

CMD ["python", "-m", "kubefuncs.gateway"]
