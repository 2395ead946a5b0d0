# emp on a rented GPU box: the machine agent is the container's entrypoint (PID 1: it reaps
# orphans and handles SIGTERM: workers drain, the rest of their jobs go back to the queue).
#
#   docker build -t emp .                                   # CPU-only base, for trying it out
#   docker build --build-arg BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime -t emp:gpu .
#   docker run --gpus all -e EMP_REDIS_URL=redis://... -e EMP_COMFYUI_INSTALL=true -p 9090:9090 emp:gpu
#
# ComfyUI is cloned at start when EMP_COMFYUI_INSTALL=true (idempotent: a restarted container
# with a persistent /workspace does nothing), or baked in by a derived image at /workspace/ComfyUI.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/emp
COPY pyproject.toml README.md ./
COPY emp ./emp
COPY config ./config
RUN pip install --no-cache-dir .

ENV EMP_COMFYUI_DIR=/workspace/ComfyUI \
    EMP_HEALTH_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/health', timeout=4)"
ENTRYPOINT ["emp", "machine", "up"]
