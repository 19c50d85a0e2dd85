"""Block-quantize a causal LM's output head; a tied input embedding shares the head's codes.

The head becomes a QuantLinear without correction (MatMulNBits alone: at one token per step the head is the largest
matmul of a small LLM, so it must run on the 4-bit fast path, and an FP32 correction over a 50k-row output costs
more than it buys). When the head is tied to the input embedding, the embedding becomes a QuantEmbedding over the
same packed tensors, so the exporter stores one table read by both GatherBlockQuantized and MatMulNBits. The table
is packed by the caller: whole (apply.py) or in row chunks read lazily (stream.py).
"""

from __future__ import annotations

from torch import Tensor, nn

from svdq_edge.config import ConfigError
from svdq_edge.model.embedding import QuantEmbedding, embedding_scale
from svdq_edge.model.modules import QuantLinear, module_name, set_module
from svdq_edge.quant.decompose import MixedWeight
from svdq_edge.quant.packing import PackedWeight


def output_head(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """(name, module) of the model's output head when it is an nn.Linear, else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        return None
    return module_name(model, head), head


def require_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """output_head, or a one-line error when head_bits asks for a head the model does not have."""
    found = output_head(model)
    if found is None:
        raise ConfigError("head_bits is set but the model has no linear output head")
    return found


def install_head(model: nn.Module, packed: PackedWeight, bias: Tensor | None) -> bool:
    """Replace the head (in place) by MatMulNBits over `packed`; a tied embedding (the same Parameter, also on the
    meta device) takes the same tensors (save_quantized stores them under both names). Returns whether it is tied."""
    name, head = require_head(model)
    emb = model.get_input_embeddings()
    tied = isinstance(emb, nn.Embedding) and head.weight is emb.weight
    set_module(model, name, QuantLinear(MixedWeight(packed, None), bias))
    if tied:
        set_module(model, module_name(model, emb), QuantEmbedding(packed, emb.padding_idx, embedding_scale(emb)))
    return tied
