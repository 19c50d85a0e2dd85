"""Read GGML tensors exactly: block formats unpack to GGMLCodes, float formats to float32."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from svdq_edge.ggml import kquants, legacy
from svdq_edge.ggml.codes import GGMLCodes, GGMLFormatError, GGMLType

UNPACKERS: dict[GGMLType, Callable[[Tensor], GGMLCodes]] = {
    GGMLType.Q4_0: legacy.q4_0,
    GGMLType.Q4_1: legacy.q4_1,
    GGMLType.Q5_0: legacy.q5_0,
    GGMLType.Q5_1: legacy.q5_1,
    GGMLType.Q8_0: legacy.q8_0,
    GGMLType.Q2_K: kquants.q2_k,
    GGMLType.Q3_K: kquants.q3_k,
    GGMLType.Q4_K: kquants.q4_k,
    GGMLType.Q5_K: kquants.q5_k,
    GGMLType.Q6_K: kquants.q6_k,
}
# Weights per block of each block format (super-block for the K-quants).
BLOCK_WEIGHTS = {t: 256 if t.name.endswith("_K") else 32 for t in UNPACKERS}
FLOAT_DTYPES = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}


def unpack(raw: Tensor, kind: GGMLType) -> GGMLCodes:
    """uint8 [N, row bytes] of a block-format tensor -> GGMLCodes with codes [N, K]."""
    if kind not in UNPACKERS:
        raise GGMLFormatError(f"{kind.name} is not a block format")
    return UNPACKERS[kind](raw)


def read_float(raw: Tensor, kind: GGMLType) -> Tensor:
    """uint8 [..., row bytes] of an F32/F16/BF16 tensor -> float32 [..., K]."""
    return raw.contiguous().view(FLOAT_DTYPES[kind]).float()


def dequantize(raw: Tensor, kind: GGMLType) -> Tensor:
    """float32 [N, K] of any supported type."""
    return read_float(raw, kind) if kind.is_float else unpack(raw, kind).dequantize()


__all__ = ["BLOCK_WEIGHTS", "GGMLCodes", "GGMLFormatError", "GGMLType", "UNPACKERS", "dequantize", "read_float",
           "unpack"]
