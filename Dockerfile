# syntax=docker/dockerfile:1
# Stage 1 builds wheels for raymall and its dependencies; stage 2 installs them into a slim
# runtime with no compilers. The CPU build of torch goes first so sentence-transformers does
# not pull CUDA packages.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY raymall raymall
COPY actors actors
COPY deployments deployments
COPY models models
COPY recommend recommend
COPY migrations migrations
RUN pip wheel --wheel-dir /wheels torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 raymall \
    && mkdir -p /var/lib/raymall && chown raymall /var/lib/raymall
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/torch-*.whl \
    && pip install --no-cache-dir --find-links /wheels raymall \
    && rm -rf /wheels
USER raymall
WORKDIR /home/raymall
ENV RAYMALL_VAR_DIR=/var/lib/raymall RAYMALL_HTTP_HOST=0.0.0.0 HF_HUB_OFFLINE=1
EXPOSE 8000 6380 8265
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s \
    CMD curl -f http://localhost:8000/healthz || exit 1
CMD ["raymall", "serve"]
