"""Pack block-wise codes into ONNX Runtime's `com.microsoft::MatMulNBits` layout, and unpack them back.

MatMulNBits (bits b in {2, 4, 8}) stores, for a weight [N, K] with block size bs and nb = ceil(K / bs) blocks:
  B            uint8 [N, nb, bs * b / 8]   codes, 8/b per byte, the lowest bits holding the earliest k;
  scales       float [N * nb];
  zero_points  uint8 [N * ceil(nb * b / 8)] codes packed the same way, each row padded to whole bytes.
3-bit codes (0..7) are stored in the 4-bit container, and 5- and 6-bit codes (transcoded GGUF) in the 8-bit one,
so the file runs on stock kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from svdq_edge.quant.blockwise import BlockQuant


class QuantFormat(Enum):
    """Container layouts MatMulNBits understands; the value is bits per stored code."""

    INT2 = 2
    INT4 = 4
    INT8 = 8

    @classmethod
    def for_bits(cls, bits: int) -> QuantFormat:
        """The container for `bits`-bit codes: the narrowest of 2, 4 and 8 bits that holds them."""
        if bits not in range(2, 9):
            raise ValueError(f"no MatMulNBits container for {bits}-bit codes")
        return next(f for f in cls if f.value >= bits)

    @property
    def per_byte(self) -> int:
        return 8 // self.value


@dataclass(frozen=True)
class PackedWeight:
    """A weight in the exact MatMulNBits layout.

    B:           uint8 [N, n_blocks, block_size * container_bits / 8].
    scales:      float32 [N, n_blocks] (flattened to [N * n_blocks] in ONNX).
    zero_points: uint8 [N, ceil(n_blocks * container_bits / 8)] (flattened in ONNX).
    K, N:        the unpadded weight shape [N, K].
    bits:        logical code width (2 to 8); `fmt` is the container.
    block_size:  block length along K.
    """

    B: Tensor
    scales: Tensor
    zero_points: Tensor
    K: int
    N: int
    bits: int
    block_size: int

    @property
    def fmt(self) -> QuantFormat:
        return QuantFormat.for_bits(self.bits)

    @property
    def n_blocks(self) -> int:
        return self.scales.shape[1]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.B, self.scales, self.zero_points))

    def problem(self) -> str | None:
        """Why these tensors cannot be this [N, K] weight (shapes, dtypes, non-finite scales); None when they can.
        A quantized folder is checked with this before anything is built from it."""
        if not 2 <= self.bits <= 8 or self.block_size <= 0 or self.N <= 0 or self.K <= 0:
            return f"bits {self.bits}, block_size {self.block_size}, shape [{self.N}, {self.K}] out of range"
        c, nb = self.fmt.value, -(-self.K // self.block_size)
        want = {"B": ((self.N, nb, self.block_size * c // 8), torch.uint8), "scales": ((self.N, nb), torch.float32),
                "zero_points": ((self.N, -(-nb * c // 8)), torch.uint8)}
        for name, (shape, dtype) in want.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape or t.dtype != dtype:
                return f"{name} is {t.dtype} {list(t.shape)}, expected {dtype} {list(shape)}"
        if not torch.isfinite(self.scales).all():
            return "scales hold NaN or infinity"
        return None


def _pack_codes(codes: Tensor, fmt: QuantFormat) -> Tensor:
    """uint8 [..., M] codes (M a multiple of per_byte) -> uint8 [..., M / per_byte]. Works in uint8 throughout: a
    token table or LM head has tens of millions of codes, and wider intermediates cost hundreds of MB."""
    per = fmt.per_byte
    codes = codes.to(torch.uint8)
    if per == 1:
        return codes.contiguous()
    c = codes.reshape(*codes.shape[:-1], -1, per)
    out = c[..., 0].clone()
    for j in range(1, per):
        out |= c[..., j] << (j * fmt.value)
    return out


def _unpack_codes(packed: Tensor, fmt: QuantFormat) -> Tensor:
    """uint8 [..., M] -> uint8 [..., M * per_byte] (in uint8, as `_pack_codes`)."""
    per = fmt.per_byte
    if per == 1:
        return packed.clone()
    shifts = torch.arange(0, 8, fmt.value, dtype=torch.uint8)
    c = (packed.unsqueeze(-1) >> shifts) & (2**fmt.value - 1)
    return c.reshape(*packed.shape[:-1], -1)


def pack(q: BlockQuant) -> PackedWeight:
    """BlockQuant -> PackedWeight in the MatMulNBits layout."""
    fmt = QuantFormat.for_bits(q.bits)
    N, nb, bs = q.N, q.n_blocks, q.block_size
    if (bs * fmt.value) % 8:
        raise ValueError(f"block_size {bs} does not fill whole bytes at {fmt.value} bits")
    B = _pack_codes(q.codes.reshape(N, nb, bs), fmt)
    zp_len = -(-nb // fmt.per_byte) * fmt.per_byte  # each row padded to whole bytes
    zero = torch.nn.functional.pad(q.zero.to(torch.int32), (0, zp_len - nb)).to(torch.uint8)
    return PackedWeight(
        B=B,
        scales=q.scale.float().contiguous(),
        zero_points=_pack_codes(zero, fmt),
        K=q.K,
        N=N,
        bits=q.bits,
        block_size=bs,
    )


def unpack_zero_points(p: PackedWeight) -> Tensor:
    """uint8 [N, n_blocks]: the zero points alone (no codes unpacked)."""
    return _unpack_codes(p.zero_points, p.fmt)[:, : p.n_blocks]


def unpack(p: PackedWeight) -> BlockQuant:
    """PackedWeight -> BlockQuant (exact inverse of `pack`)."""
    fmt = p.fmt
    nb = p.n_blocks
    codes = _unpack_codes(p.B, fmt).reshape(p.N, nb * p.block_size)
    zero = unpack_zero_points(p)
    return BlockQuant(codes=codes, scale=p.scales, zero=zero, K=p.K, bits=p.bits, block_size=p.block_size)


def split_halves(p: PackedWeight) -> PackedWeight:
    """8-bit codes as two 4-bit halves along K, exactly: W [N, K] -> W' [N, 2K] with codes [u >> 4 | u & 15],
    scales [16 s | s] and zero points [z >> 4 | z & 15], so that x @ W^T = [x, x] @ W'^T.

    (u - z) s = 16 s ((u >> 4) - (z >> 4)) + s ((u & 15) - (z & 15)) for any codes and zero points, and 16 s is exact
    in float. ONNX Runtime's CPU has an FP32 fast path for 4-bit MatMulNBits and none for 8-bit (50x slower), so
    an exact 8-bit layer runs as this. K must be a whole number of blocks (the halves are joined block-aligned)."""
    if p.fmt is not QuantFormat.INT8:
        raise ValueError(f"split_halves takes 8-bit codes, got {p.bits}-bit")
    if p.K != p.n_blocks * p.block_size:
        raise ValueError(f"K={p.K} is not a whole number of {p.block_size}-blocks")
    q = unpack(p)
    u, z = q.codes, q.zero
    halves = BlockQuant(codes=torch.cat([u >> 4, u & 15], dim=1), scale=torch.cat([16.0 * q.scale, q.scale], dim=1),
                        zero=torch.cat([z >> 4, z & 15], dim=1), K=2 * p.K, bits=4, block_size=p.block_size)
    return pack(halves)
