# syntax=docker/dockerfile:1
# One image for every role: `beacon api` (default), `beacon worker`, `beacon beat`, `beacon flower`,
# `beacon migrate`, `beacon simulator`. Platforms pass the subcommand as the command (CMD);
# the entry point stays `beacon`.

# --- build: the project and every dependency as wheels -------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY beacon ./beacon
COPY app ./app
COPY workers ./workers
COPY beat ./beat
RUN pip wheel --wheel-dir /wheels .

# --- runtime: slim Python, the wheels installed, a non-root user ---------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8090 \
    BEACON_DATA_DIR=/data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels beacon-runner \
 && useradd --create-home --uid 10001 --user-group beacon \
 && mkdir -p /data \
 && chown beacon:beacon /data
WORKDIR /app
COPY deploy ./deploy
USER beacon
EXPOSE 8090
# The API's liveness; compose gives the other roles checks of their own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8090'), timeout=4)"]
ENTRYPOINT ["beacon"]
CMD ["api"]
