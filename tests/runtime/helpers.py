import torch

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.onnx.linear import quant_linear_fragment, single_layer_model
from svdq_edge.quant.decompose import decompose


def tiny_linear_model(structure: str = "channel") -> bytes:
    W = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    mixed = decompose(W, QuantConfig(block_size=32, keep=0.05, structure=structure))
    return single_layer_model(quant_linear_fragment("fc", mixed, "x", "y"), 64, 32).SerializeToString()
