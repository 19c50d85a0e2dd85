"""Stack mixed weights along N (output rows): one MatMulNBits for q/k/v (or any layers reading the same input).

MatMulNBits codes, scales and zero points are stored per output row, so concatenating rows is exact. Corrections
merge into one of the same structure:
  channel  the union of the kept input channels; a layer that did not keep a channel gets zeros there
           (exact: those zeros multiply x and add nothing);
  lowrank  R stacked [r_1 + r_2 + ..., K], L block-diagonal [N_1 + N_2 + ..., r_1 + r_2 + ...];
  element  COO entries with their rows shifted by the preceding layers' N;
  block-offset  M stacked along N (the same K and block, so the same blocks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.quant.decompose import (
    BlockOffsetCorrection,
    ChannelCorrection,
    ElementCorrection,
    LowRankCorrection,
    MixedWeight,
)
from svdq_edge.quant.packing import PackedWeight


class ConcatError(ValueError):
    """The weights cannot share one MatMulNBits (different K, bits, block size or correction structure)."""


def can_concat(weights: list[MixedWeight]) -> bool:
    first = weights[0]
    p0 = first.packed
    return all(w.packed.K == p0.K and w.packed.bits == p0.bits and w.packed.block_size == p0.block_size
               and w.structure == first.structure for w in weights)


def concat_rows(weights: list[MixedWeight]) -> MixedWeight:
    """One MixedWeight whose dequantize() equals torch.cat([w.dequantize() for w in weights]) exactly."""
    if not weights:
        raise ConcatError("nothing to concatenate")
    if not can_concat(weights):
        raise ConcatError("weights differ in K, bits, block size or correction structure")
    p0 = weights[0].packed
    N = sum(w.packed.N for w in weights)
    packed = PackedWeight(
        B=torch.cat([w.packed.B for w in weights]),
        scales=torch.cat([w.packed.scales for w in weights]),
        zero_points=torch.cat([w.packed.zero_points for w in weights]),
        K=p0.K, N=N, bits=p0.bits, block_size=p0.block_size,
    )
    corrections = [w.correction for w in weights]
    if corrections[0] is None:
        return MixedWeight(packed, None)
    sizes = [w.packed.N for w in weights]
    merge = {ChannelCorrection: _channels, LowRankCorrection: _lowrank, ElementCorrection: _elements,
             BlockOffsetCorrection: _offsets}
    return MixedWeight(packed, merge[type(corrections[0])](corrections, sizes))


def _channels(cs: list[ChannelCorrection], sizes: list[int]) -> ChannelCorrection:
    channels = torch.unique(torch.cat([c.channels.long() for c in cs]))  # sorted union
    values = torch.zeros(sum(sizes), channels.numel())
    row = 0
    for c, n in zip(cs, sizes, strict=True):
        pos = torch.searchsorted(channels, c.channels.long())
        values[row : row + n, pos] = c.values.float()
        row += n
    return ChannelCorrection(channels=channels, values=values)


def _lowrank(cs: list[LowRankCorrection], sizes: list[int]) -> LowRankCorrection:
    R = torch.cat([c.R for c in cs])
    L = torch.block_diag(*[c.L for c in cs])
    return LowRankCorrection(L=L.contiguous(), R=R.contiguous())


def _elements(cs: list[ElementCorrection], sizes: list[int]) -> ElementCorrection:
    offsets = torch.cumsum(torch.tensor([0, *sizes[:-1]]), 0)
    rows: list[Tensor] = [c.rows + int(o) for c, o in zip(cs, offsets, strict=True)]
    return ElementCorrection(rows=torch.cat(rows).int(), cols=torch.cat([c.cols for c in cs]).int(),
                             values=torch.cat([c.values for c in cs]))


def _offsets(cs: list[BlockOffsetCorrection], sizes: list[int]) -> BlockOffsetCorrection:
    if len({c.M.shape[1] for c in cs}) > 1:
        raise ConcatError("block offsets differ in their number of blocks")
    return BlockOffsetCorrection(M=torch.cat([c.M for c in cs]).contiguous())
