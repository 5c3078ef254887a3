# The official Triton image (Triton 2.51.0, the same server as the nvidia-pytriton wheel used by
# `make serve`) plus what the Python pre/post-processing models import: the `finer` package with
# numpy and tokenizers. ONNX Runtime is the image's native backend.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
WORKDIR /opt/finer-triton
COPY pyproject.toml README.md ./
COPY finer ./finer
# Core install only (no extras): numpy + tokenizers, no torch.
RUN pip install --no-cache-dir . && python3 -c "import finer.pipeline, tokenizers"
