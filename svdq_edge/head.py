"""Block-quantize a causal LM's output head; a tied input embedding shares the head's codes.

The head becomes a QuantLinear without correction (MatMulNBits alone: at one token per step the head is the largest
matmul of a small LLM, so it must run on the 4-bit fast path, and an FP32 correction over a 50k-row output costs
more than it buys). When the head is tied to the input embedding, the embedding becomes a QuantEmbedding over
equal codes, so the exporter stores one table read by both GatherBlockQuantized and MatMulNBits.
"""

from __future__ import annotations

from torch import nn

from svdq_edge.decompose import MixedWeight
from svdq_edge.embedding import QuantEmbedding, quantize_embedding_table
from svdq_edge.modules import QuantLinear, set_module


def output_head(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """(name, module) of the model's output head when it is an nn.Linear, else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        return None
    return next(n for n, m in model.named_modules() if m is head), head


def quantize_head(model: nn.Module, bits: int, block_size: int, symmetric: bool = False,
                  clip: bool = False) -> tuple[str, MixedWeight, bool]:
    """Replace the head (in place); returns (head name, its mixed weight, whether the embedding shares it)."""
    found = output_head(model)
    if found is None:
        raise ValueError("head_bits is set but the model has no linear output head")
    name, head = found
    emb = model.get_input_embeddings()
    tied = isinstance(emb, nn.Embedding) and head.weight is emb.weight
    W = head.weight.detach().float()
    # The table layout is the MatMulNBits one (rows = vocab = N), so one packing serves both ops.
    packed = quantize_embedding_table(W, bits, block_size, symmetric, clip)
    mixed = MixedWeight(packed, None)
    set_module(model, name, QuantLinear(mixed, head.bias))
    if tied:  # the same tensors (save_quantized stores them under both names)
        emb_name = next(n for n, m in model.named_modules() if m is emb)
        set_module(model, emb_name, QuantEmbedding(packed, emb.padding_idx))
    return name, mixed, tied
