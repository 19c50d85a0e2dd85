"""ggml's legacy block formats: 32 weights per block, one FP16 scale d (and a min m for the `_1` kinds).

  Q4_0  18 B: d, 16 B nibbles (low nibbles: weights 0-15, high: 16-31)      w = d * (q - 8)
  Q4_1  20 B: d, m, 16 B nibbles                                            w = d * q + m
  Q5_0  22 B: d, 4 B fifth bits (bit i: weight i), 16 B nibbles              w = d * (q - 16)
  Q5_1  24 B: d, m, 4 B fifth bits, 16 B nibbles                            w = d * q + m
  Q8_0  34 B: d, 32 int8                                                     w = d * q, q in [-128, 127]

Each function maps uint8 [N, K / 32 * block bytes] (a tensor's rows as stored) to GGMLCodes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.ggml.codes import GGMLCodes, bits_of, f16, split_blocks

GROUP = 32


def _nibbles(qs: Tensor) -> Tensor:
    """uint8 [N, nb, 16] -> uint8 [N, nb, 32]: the low nibbles, then the high ones."""
    return bits_of(qs, 4).reshape(*qs.shape[:2], GROUP)


def _fifth_bits(qh: Tensor) -> Tensor:
    """uint8 [N, nb, 4] (a little-endian uint32) -> uint8 [N, nb, 32]: bit i of the word, weight i."""
    return bits_of(qh, 1).transpose(-1, -2).reshape(*qh.shape[:2], GROUP)


def _codes(q: Tensor) -> Tensor:
    return q.reshape(q.shape[0], -1)


def q4_0(raw: Tensor) -> GGMLCodes:
    d, qs = split_blocks(raw, 18, (2, 16))
    return GGMLCodes(_codes(_nibbles(qs)), f16(d), None, zero=8, bits=4, group=GROUP)


def q4_1(raw: Tensor) -> GGMLCodes:
    d, m, qs = split_blocks(raw, 20, (2, 2, 16))
    return GGMLCodes(_codes(_nibbles(qs)), f16(d), f16(m), zero=0, bits=4, group=GROUP)


def q5_0(raw: Tensor) -> GGMLCodes:
    d, qh, qs = split_blocks(raw, 22, (2, 4, 16))
    q = _nibbles(qs) | (_fifth_bits(qh) << 4)
    return GGMLCodes(_codes(q), f16(d), None, zero=16, bits=5, group=GROUP)


def q5_1(raw: Tensor) -> GGMLCodes:
    d, m, qh, qs = split_blocks(raw, 24, (2, 2, 4, 16))
    q = _nibbles(qs) | (_fifth_bits(qh) << 4)
    return GGMLCodes(_codes(q), f16(d), f16(m), zero=0, bits=5, group=GROUP)


def q8_0(raw: Tensor) -> GGMLCodes:
    d, qs = split_blocks(raw, 34, (2, 32))
    q = qs ^ 0x80  # int8 two's complement -> offset binary: q + 128 as uint8
    return GGMLCodes(_codes(q.to(torch.uint8)), f16(d), None, zero=128, bits=8, group=GROUP)
