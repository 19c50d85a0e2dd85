"""Block-wise integer quantization along K, grouped exactly as ONNX Runtime's MatMulNBits groups weights.

W has shape [N, K] (out, in) like `nn.Linear.weight`. Each output row is split into ceil(K / block_size) blocks of
`block_size` consecutive input positions; each block has one float scale and one integer zero point, and

    W_hat[n, k] = (codes[n, k] - zero[n, k // block_size]) * scale[n, k // block_size].

K that is not a multiple of block_size is padded with excluded positions. Excluded positions (the salient weights
that live in the FP32 correction, and the padding) take no part in their block's range and are given the code equal
to the zero point, so they dequantize to exactly 0 and the correction can hold their full value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Shrink ratios tried by the optional clipping search (1.0 = plain min/max).
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)


@dataclass(frozen=True)
class BlockQuant:
    """Unpacked block-wise codes.

    codes: uint8 [N, n_blocks * block_size], values in [0, 2^bits - 1] (padded along K).
    scale: float32 [N, n_blocks].
    zero:  uint8 [N, n_blocks], integer zero points in [0, 2^bits - 1].
    K:     the unpadded input dimension.
    bits, block_size: as quantized.
    """

    codes: Tensor
    scale: Tensor
    zero: Tensor
    K: int
    bits: int
    block_size: int

    @property
    def N(self) -> int:
        return self.codes.shape[0]

    @property
    def n_blocks(self) -> int:
        return self.scale.shape[1]


def n_blocks(K: int, block_size: int) -> int:
    return (K + block_size - 1) // block_size


def _to_blocks(W: Tensor, block_size: int, fill: float | bool) -> Tensor:
    """[N, K] -> [N, n_blocks, block_size], padding K with `fill`."""
    N, K = W.shape
    pad = n_blocks(K, block_size) * block_size - K
    if pad:
        W = torch.nn.functional.pad(W, (0, pad), value=fill)
    return W.reshape(N, -1, block_size)


def _quantize_with_range(Wb: Tensor, lo: Tensor, hi: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, ...]:
    """Codes, scale, zero for blocks Wb [N, nb, bs] given per-block range [lo, hi] ([N, nb, 1] each)."""
    qmax = 2**bits - 1
    if symmetric:
        half = 2 ** (bits - 1)
        absmax = torch.maximum(lo.abs(), hi.abs())
        scale = absmax / max(half - 1, 1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.full_like(scale, float(half))
    else:
        # 0 is kept inside the range so the integer zero point is representable (as ORT's own quantizer does).
        lo = torch.clamp(lo, max=0.0)
        hi = torch.clamp(hi, min=0.0)
        scale = (hi - lo) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.clamp(torch.round(-lo / scale), 0, qmax)
    codes = torch.clamp(torch.round(Wb / scale) + zero, 0, qmax)
    return codes, scale, zero


def quantize_blockwise(
    W: Tensor,
    bits: int,
    block_size: int,
    symmetric: bool = False,
    exclude: Tensor | None = None,
    clip: bool = False,
    absmax: float | None = None,
) -> BlockQuant:
    """Quantize W [N, K] block-wise; `exclude` (bool [N, K]) marks weights kept out of the ranges (code = zero).

    `absmax` (symmetric only, no clipping): every block takes the range [-absmax, absmax], so all blocks share one
    scale: a per-tensor scale when each row is one block (the int8 kernel's fast path).
    """
    if absmax is not None and (not symmetric or clip or not absmax >= float(W.detach().abs().max())):
        raise ValueError("a shared absmax takes symmetric codes, no clipping, and a bound on |W|")
    if W.dim() != 2:
        raise ValueError(f"W must be 2-D [out, in], got shape {tuple(W.shape)}")
    W = W.detach().float()
    N, K = W.shape
    valid = torch.ones_like(W, dtype=torch.bool) if exclude is None else ~exclude.bool()
    Wb = _to_blocks(W, block_size, 0.0)
    Vb = _to_blocks(valid, block_size, False)
    inf = torch.tensor(float("inf"))
    lo = torch.where(Vb, Wb, inf).amin(dim=-1, keepdim=True)
    hi = torch.where(Vb, Wb, -inf).amax(dim=-1, keepdim=True)
    empty = ~Vb.any(dim=-1, keepdim=True)
    lo = torch.where(empty, torch.zeros_like(lo), lo)
    hi = torch.where(empty, torch.zeros_like(hi), hi)
    if absmax is not None:
        lo, hi = torch.full_like(lo, -absmax), torch.full_like(hi, absmax)

    codes, scale, zero = _quantize_with_range(Wb, lo, hi, bits, symmetric)
    if clip:
        best_err = _block_error(Wb, Vb, codes, scale, zero)
        for ratio in CLIP_RATIOS[1:]:
            c, s, z = _quantize_with_range(Wb, lo * ratio, hi * ratio, bits, symmetric)
            err = _block_error(Wb, Vb, c, s, z)
            better = err < best_err  # [N, nb, 1]
            codes = torch.where(better, c, codes)
            scale = torch.where(better, s, scale)
            zero = torch.where(better, z, zero)
            best_err = torch.minimum(err, best_err)

    # Excluded and padded positions dequantize to exactly 0.
    codes = torch.where(Vb, codes, zero.expand_as(codes))
    return BlockQuant(
        codes=codes.reshape(N, -1).to(torch.uint8),
        scale=scale.squeeze(-1).float(),
        zero=zero.squeeze(-1).to(torch.uint8),
        K=K,
        bits=bits,
        block_size=block_size,
    )


def _block_error(Wb: Tensor, Vb: Tensor, codes: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    err = torch.where(Vb, (codes - zero) * scale - Wb, torch.zeros_like(Wb))
    return (err * err).sum(dim=-1, keepdim=True)


def dequantize_blockwise(q: BlockQuant) -> Tensor:
    """W_hat float32 [N, K] from block-wise codes."""
    codes = q.codes.reshape(q.N, q.n_blocks, q.block_size).float()
    W_hat = (codes - q.zero.float().unsqueeze(-1)) * q.scale.unsqueeze(-1)
    return W_hat.reshape(q.N, -1)[:, : q.K]
