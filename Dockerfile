# GPU image: CUDA 13 + cuDNN 9 runtime, onnxruntime-gpu, the serving code only (no PyTorch).
#   docker build -t triplex .
#   docker run --gpus all -p 8000:8000 -v "$PWD/export:/models" triplex
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# the distribution's python3 follows the base image; pinning its exact build would break rebuilds
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY docker/requirements-serve.txt docker/requirements-serve.txt
RUN pip install "onnxruntime-gpu==1.31.*" -r docker/requirements-serve.txt

# the package itself (no dependencies: they are the layer above), built outside the working directory
# so that the source folder cannot shadow the installed package
COPY pyproject.toml README.md /src/
COPY triplex/ /src/triplex/
COPY model/ /src/model/
COPY service/ /src/service/
COPY training/ /src/training/
RUN pip install --no-deps /src && rm -rf /src
COPY docker/entrypoint.sh docker/entrypoint.sh
RUN useradd --create-home --uid 10001 triplex

USER 10001
ENV TRIPLEX_MODEL_DIR=/models \
    TRIPLEX_HOST=0.0.0.0 \
    TRIPLEX_PORT=8000 \
    TRIPLEX_PROVIDER=auto
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TRIPLEX_PORT', '8000') + '/health/ready', timeout=2)"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
