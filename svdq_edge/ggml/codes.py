"""Unpacked GGML weights: integer codes with one scale and one optional FP32 offset per group of K.

Every GGML block format this package reads (the legacy Q4_0..Q8_0 and the K-quants Q2_K..Q6_K) dequantizes as

    w[n, k] = scale[n, k // group] * (codes[n, k] - zero) + offset[n, k // group]

with a format-wide integer `zero` (8 for Q4_0, 0 for Q4_1, ...). The K-quants' 4/6/8-bit sub-block scales and mins
are expanded here into FP32 `scale` and `offset` per sub-block, computed in float32 exactly as ggml does
(d * sc, dmin * m), so this form reproduces ggml's dequantized values bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from svdq_edge.errors import UserError


class GGMLFormatError(UserError, ValueError):
    """Bytes that do not hold whole blocks of the named GGML type."""


@dataclass(frozen=True)
class GGMLCodes:
    """One weight unpacked from a GGML block format.

    codes:  uint8 [N, K], values in [0, 2^bits - 1].
    scale:  float32 [N, K / group].
    offset: float32 [N, K / group], or None for formats without a min (Q4_0, Q5_0, Q8_0, Q3_K, Q6_K).
    zero:   the format's integer zero point (codes equal to it dequantize to `offset`).
    bits:   logical code width: 2, 3, 4, 5, 6 or 8.
    group:  K positions sharing one scale (32 for the legacy formats, 16 or 32 for K-quant sub-blocks).
    """

    codes: Tensor
    scale: Tensor
    offset: Tensor | None
    zero: int
    bits: int
    group: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    def dequantize(self) -> Tensor:
        """W float32 [N, K]."""
        N, K = self.shape
        q = self.codes.reshape(N, -1, self.group).float() - float(self.zero)
        W = self.scale.unsqueeze(-1) * q
        if self.offset is not None:
            W = W + self.offset.unsqueeze(-1)
        return W.reshape(N, K)


def f16(raw: Tensor) -> Tensor:
    """uint8 [..., 2] little-endian IEEE half -> float32 [...]."""
    return raw.contiguous().view(torch.float16).squeeze(-1).float()


def split_blocks(raw: Tensor, block_bytes: int, fields: tuple[int, ...]) -> list[Tensor]:
    """uint8 [N, nb * block_bytes] -> one uint8 [N, nb, size] view per field of the block struct, in order."""
    N, nbytes = raw.shape
    if nbytes % block_bytes or sum(fields) != block_bytes:
        raise GGMLFormatError(f"{nbytes} bytes per row is not a whole number of {block_bytes}-byte blocks")
    blocks = raw.reshape(N, nbytes // block_bytes, block_bytes)
    out, at = [], 0
    for size in fields:
        out.append(blocks[..., at : at + size])
        at += size
    return out


def bits_of(raw: Tensor, width: int) -> Tensor:
    """uint8 [..., M] -> uint8 [..., 8 / width, M]: field j of each byte (bits j*width .. (j+1)*width - 1)."""
    shifts = torch.arange(0, 8, width, dtype=torch.uint8).view(-1, 1)
    return (raw.unsqueeze(-2) >> shifts) & (2**width - 1)


class GGMLType(Enum):
    """The GGML tensor types read here; values are ggml's type ids (GGMLQuantizationType in the gguf package)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    BF16 = 30

    @classmethod
    def of(cls, type_id: int, tensor: str = "tensor") -> GGMLType:
        try:
            return cls(int(type_id))
        except ValueError:
            names = ", ".join(t.name for t in cls)
            raise GGMLFormatError(f"{tensor}: GGML type id {int(type_id)} is not supported (supported: {names})") \
                from None

    @property
    def is_float(self) -> bool:
        return self in (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
