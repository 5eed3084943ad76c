# One image for every Rationer service; compose.yaml picks the command.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# torch (CPU) is needed only to export the embedder at build time; pin it so no
# resolver step pulls a multi-GB CUDA build. For GPU workers build with
# --build-arg CMAKE_ARGS=-DGGML_CUDA=on on a CUDA base image.
ARG CMAKE_ARGS=""
ENV CMAKE_ARGS=${CMAKE_ARGS}
# Point this at PyTorch's CPU wheel index to skip the multi-GB CUDA build.
ARG TORCH_INDEX=""
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY rationer ./rationer
COPY services ./services
RUN pip install "torch==2.13.0" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
 && pip install "grpcio-tools==1.85.1" mypy-protobuf \
 && python -m rationer.tools.genproto \
 && pip install ".[train]" \
 && python -m rationer.embedding.export --quiet
COPY deploy/gateway.toml /etc/rationer/gateway.toml
RUN useradd --create-home rationer && mkdir -p /data && chown rationer /data
USER rationer
# The embedder was exported for root; give the service user its own copy.
RUN python -m rationer.embedding.export --quiet || true
ENTRYPOINT ["rationer"]
CMD ["--help"]
