# syntax=docker/dockerfile:1
# One image for every role: `beacon api` (default), `beacon worker`, `beacon beat`, `beacon flower`,
# `beacon migrate`, `beacon simulator`. Platforms pass the subcommand as the command (CMD);
# the entry point stays `beacon`.
#
#   docker build --build-arg GIT_SHA="$(git rev-parse HEAD)" -t beacon-runner .
#
# GIT_SHA names the commit in the Sentry release (beacon-runner@<version>+<sha>).

# --- build: the locked dependencies and the project as wheels --------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip wheel --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY beacon ./beacon
COPY app ./app
COPY workers ./workers
COPY beat ./beat
RUN pip wheel --no-deps --wheel-dir /project .

# --- runtime: slim Python, the wheels installed, a numeric non-root user ----------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8090 \
    BEACON_DATA_DIR=/data
RUN groupadd --gid 10001 beacon \
 && useradd --create-home --uid 10001 --gid 10001 beacon \
 && mkdir -p /data \
 && chown 10001:10001 /data
# The locked dependencies in a layer of their own, then the project without resolving again.
COPY requirements.lock /tmp/requirements.lock
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels -r /tmp/requirements.lock
RUN --mount=type=bind,from=build,source=/project,target=/project \
    pip install --no-cache-dir --no-index --no-deps /project/*.whl
WORKDIR /app
COPY deploy ./deploy
ARG GIT_SHA=""
ENV GIT_SHA=${GIT_SHA}
USER 10001:10001
EXPOSE 8090
# One check for every role: it finds the container's `beacon <role>` process and asks that role's
# own signal on loopback (the API's liveness, the worker's /metrics, Flower's /healthcheck, …).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "beacon.healthcheck"]
ENTRYPOINT ["beacon"]
CMD ["api"]
