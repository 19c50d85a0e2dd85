"""svdq-edge: SVD-based mixed-precision quantization of transformers, exported to ONNX Runtime (MatMulNBits plus a
separate FP32 correction) and validated where models ship. The Python API is in `svdq_edge.api`; see the README."""

from importlib.metadata import PackageNotFoundError, version

from svdq_edge.api import Quantized, export, load, quantize
from svdq_edge.config import QuantConfig, TranscodeConfig

try:
    __version__ = version("svdq-edge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["QuantConfig", "Quantized", "TranscodeConfig", "__version__", "export", "load", "quantize"]
