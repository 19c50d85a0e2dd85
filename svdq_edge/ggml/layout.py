"""GGML codes in ONNX Runtime's layouts: MatMulNBits codes and scales plus a block-offset correction, exactly.

MatMulNBits computes (q - z) * scale with z = 2^(c-1) of its c-bit container when no zero-point tensor is given,
and that is its fast CPU path (an explicit zero-point tensor costs decode time, docs/decoders.md). So each format
is brought to the container's default zero point, exactly where possible:
  - shift the codes by z - zero when every code still fits the container (Q5_0, Q5_1, Q5_K, Q6_K in 8 bits,
    Q3_K in 4 bits; Q4_0 and Q8_0 already sit there);
  - else fold the shift into the block offsets, offset' = offset + scale * (z - zero) (Q4_1, Q4_K, Q2_K: formats
    that carry an offset anyway). The weights then differ from ggml's by float32 rounding of offset' alone.
A format without offsets whose codes do not fit keeps an explicit zero-point tensor (no format read here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.ggml.codes import GGMLCodes
from svdq_edge.quant.blockwise import BlockQuant
from svdq_edge.quant.decompose import BlockOffsetCorrection, MixedWeight
from svdq_edge.quant.packing import PackedWeight, QuantFormat, pack


def rope_unpermute_index(N: int, n_head: int) -> Tensor:
    """int64 [N]: row i of the Hugging Face Q (or K) weight is row idx[i] of llama.cpp's.

    llama.cpp's converter interleaves each head's rotary halves (rows [h, 2, d] -> [h, d, 2]) for its rotary kernel;
    Hugging Face Llama keeps them split. This is the inverse permutation."""
    d = N // n_head // 2
    if d * 2 * n_head != N:
        raise ValueError(f"{N} rows do not split into {n_head} heads of two rotary halves")
    return torch.arange(N).reshape(n_head, d, 2).transpose(1, 2).reshape(N)


def permute_rows(c: GGMLCodes, idx: Tensor) -> GGMLCodes:
    """The same weight with its output rows reordered: row i of the result is row idx[i] of `c` (exact)."""
    return GGMLCodes(c.codes[idx], c.scale[idx], None if c.offset is None else c.offset[idx], c.zero, c.bits,
                     c.group)


def row_slice(c: GGMLCodes, a: int, b: int) -> GGMLCodes:
    """Rows a..b-1 of the weight (views)."""
    return GGMLCodes(c.codes[a:b], c.scale[a:b], None if c.offset is None else c.offset[a:b], c.zero, c.bits,
                     c.group)


def to_block_quant(c: GGMLCodes) -> tuple[BlockQuant, Tensor | None]:
    """BlockQuant at the container's default zero point where possible, and the block offsets (float32 [N, nb])."""
    fmt = QuantFormat.for_bits(c.bits)
    z = 2 ** (fmt.value - 1)
    N, K = c.shape
    nb = K // c.group
    codes, zero, offset = c.codes, c.zero, c.offset
    if 0 <= z - zero and (2**c.bits - 1) + (z - zero) <= 2**fmt.value - 1:
        codes, zero = (codes + (z - zero) if z != zero else codes), z  # fits: no uint8 overflow
    elif offset is not None:
        offset, zero = offset + c.scale * float(z - zero), z
    zeros = torch.full((N, nb), zero, dtype=torch.uint8)
    return BlockQuant(codes=codes, scale=c.scale.float(), zero=zeros, K=K, bits=c.bits, block_size=c.group), offset


def to_mixed(c: GGMLCodes) -> MixedWeight:
    """MatMulNBits codes + the block offsets as an FP32 correction; dequantize() equals c.dequantize() up to float32
    rounding of folded offsets (exactly where the codes were shifted)."""
    _check_block(c)
    q, offset = to_block_quant(c)
    return MixedWeight(pack(q), None if offset is None else BlockOffsetCorrection(M=offset.contiguous()))


def to_table(c: GGMLCodes) -> PackedWeight | None:
    """A token table for GatherBlockQuantized (codes and scales only), or None when the format has offsets, which
    that operator cannot add."""
    _check_block(c)
    q, offset = to_block_quant(c)
    return None if offset is not None else pack(q)


def _check_block(c: GGMLCodes) -> None:
    # MatMulNBits and GatherBlockQuantized take power-of-two blocks of at least 16 (every ggml group qualifies).
    if c.group < 16 or c.group & (c.group - 1):
        raise ValueError(f"block of {c.group} weights has no MatMulNBits layout")
