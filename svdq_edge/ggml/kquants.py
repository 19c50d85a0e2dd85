"""ggml's K-quants: super-blocks of 256 weights split into 16 or 8 sub-blocks, each with its own small integer
scale (and min) under one or two FP16 super-block factors d, dmin.

  Q2_K   84 B: scales[16] (low nibble sc, high nibble m), qs[64] 2-bit, d, dmin   w = d*sc * q - dmin*m   (16/sub)
  Q3_K  110 B: hmask[32], qs[64] low 2 bits, scales[12] (16 x 6-bit), d           w = d*(sc-32) * (q - 4)  (16/sub)
  Q4_K  144 B: d, dmin, scales[12] (8 x 6-bit sc, 8 x 6-bit m), qs[128] 4-bit      w = d*sc * q - dmin*m   (32/sub)
  Q5_K  176 B: d, dmin, scales[12], qh[32] fifth bits, qs[128]                     w = d*sc * q - dmin*m   (32/sub)
  Q6_K  210 B: ql[128] low 4 bits, qh[64] high 2 bits, scales[16] int8, d          w = d*sc * (q - 32)     (16/sub)

Weight order inside a super-block follows ggml's dequantize_row_*: a code's byte and bit field are found by the
index arithmetic noted at each function. Products d*sc and dmin*m are formed in float32, as ggml forms them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.ggml.codes import GGMLCodes, bits_of, f16, split_blocks


def _d(raw: Tensor) -> Tensor:
    """A super-block's FP16 factor, uint8 [N, nb, 2] -> float32 [N, nb, 1] (broadcast over its sub-blocks)."""
    return f16(raw).unsqueeze(-1)


def _flat(q: Tensor) -> Tensor:
    """uint8 [N, nb, ...] -> [N, nb * prod(...)]: weights in super-block order."""
    return q.reshape(q.shape[0], -1)


def _scale_min_k4(s: Tensor) -> tuple[Tensor, Tensor]:
    """Q4_K/Q5_K's 12 scale bytes [N, nb, 12] -> 6-bit sc, m, each uint8 [N, nb, 8].

    Sub-blocks 0-3 take the low 6 bits of bytes 0-3 (sc) and 4-7 (m); sub-blocks 4-7 take a nibble of bytes 8-11
    and their top 2 bits from the top bits of bytes 0-3 (sc) and 4-7 (m)."""
    lo_sc, lo_m, hi = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = torch.cat([lo_sc & 63, (hi & 0xF) | ((lo_sc >> 6) << 4)], dim=-1)
    m = torch.cat([lo_m & 63, (hi >> 4) | ((lo_m >> 6) << 4)], dim=-1)
    return sc, m


def _scales_q3(s: Tensor) -> Tensor:
    """Q3_K's 12 scale bytes [N, nb, 12] -> 16 signed 6-bit scales, float32 [N, nb, 16].

    Scale i: low 4 bits from byte i % 8 (nibble i // 8), high 2 bits from byte 8 + i % 4 (field i // 4); minus 32."""
    i = torch.arange(16)
    lo = (s[..., i % 8] >> (4 * (i // 8)).to(torch.uint8)) & 0xF
    hi = (s[..., 8 + i % 4] >> (2 * (i // 4)).to(torch.uint8)) & 3
    return (lo | (hi << 4)).float() - 32.0


def q2_k(raw: Tensor) -> GGMLCodes:
    scales, qs, d, dmin = split_blocks(raw, 84, (16, 64, 2, 2))
    # weight 128n + 32j + l: bits 2j..2j+1 of qs[32n + l]; sub-block = weight // 16
    q = bits_of(qs.reshape(*qs.shape[:2], 2, 32), 2)  # [N, nb, n, j, l]
    sc, m = (scales & 0xF).float(), (scales >> 4).float()
    return GGMLCodes(_flat(q), _flat(_d(d) * sc), _flat(-(_d(dmin) * m)), zero=0, bits=2, group=16)


def q3_k(raw: Tensor) -> GGMLCodes:
    hmask, qs, scales, d = split_blocks(raw, 110, (32, 64, 12, 2))
    # weight 128n + 32j + l: low bits 2j..2j+1 of qs[32n + l], high bit 4n + j of hmask[l]
    low = bits_of(qs.reshape(*qs.shape[:2], 2, 32), 2)  # [N, nb, n, j, l]
    high = bits_of(hmask, 1).reshape(low.shape)  # bit 4n + j of hmask[l]
    q = low | (high << 2)
    return GGMLCodes(_flat(q), _flat(_d(d) * _scales_q3(scales)), None, zero=4, bits=3, group=16)


def q4_k(raw: Tensor) -> GGMLCodes:
    d, dmin, scales, qs = split_blocks(raw, 144, (2, 2, 12, 128))
    # weight 64j + 32h + l: nibble h of qs[32j + l]; sub-block = weight // 32
    q = bits_of(qs.reshape(*qs.shape[:2], 4, 32), 4)  # [N, nb, j, h, l]
    sc, m = _scale_min_k4(scales)
    return GGMLCodes(_flat(q), _flat(_d(d) * sc.float()), _flat(-(_d(dmin) * m.float())), zero=0, bits=4,
                     group=32)


def q5_k(raw: Tensor) -> GGMLCodes:
    d, dmin, scales, qh, qs = split_blocks(raw, 176, (2, 2, 12, 32, 128))
    # as Q4_K, plus the fifth bit of weight 64j + 32h + l: bit 2j + h of qh[l]
    low = bits_of(qs.reshape(*qs.shape[:2], 4, 32), 4)  # [N, nb, j, h, l]
    high = bits_of(qh, 1).reshape(low.shape)
    sc, m = _scale_min_k4(scales)
    return GGMLCodes(_flat(low | (high << 4)), _flat(_d(d) * sc.float()), _flat(-(_d(dmin) * m.float())),
                     zero=0, bits=5, group=32)


def q6_k(raw: Tensor) -> GGMLCodes:
    ql, qh, scales, d = split_blocks(raw, 210, (128, 64, 16, 2))
    # weight 128n + 32t + l, t = 2*nibble + half: nibble of ql[64n + 32*half + l], bits 2t..2t+1 of qh[32n + l]
    low = bits_of(ql.reshape(*ql.shape[:2], 2, 2, 32), 4)  # [N, nb, n, half, nibble, l]
    high = bits_of(qh.reshape(*qh.shape[:2], 2, 32), 2)  # [N, nb, n, t, l]
    q = low.transpose(-2, -3).reshape(high.shape) | (high << 4)
    sc = scales.contiguous().view(torch.int8).float()
    return GGMLCodes(_flat(q), _flat(_d(d) * sc), None, zero=32, bits=6, group=16)
