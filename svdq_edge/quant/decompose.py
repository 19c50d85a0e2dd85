"""Mixed-precision decomposition W = dequant(Q) + S: block-quantized codes plus an FP32 correction S.

The correction takes one of four structures (see `Structure`); `decompose` makes the first three, and GGUF
transcoding (svdq_edge/pipeline/transcode.py) the block offsets. For `element` and `channel`, the kept weights are
excluded from their blocks' ranges and coded as the zero point, so dequant(Q) is exactly 0 there and S holds their
full FP32 value: kept weights are reproduced bit-exactly. For `lowrank`, S = U_r S_r V_r^T and Q codes the residual.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from svdq_edge.config import Int8Scale, Kernel, QuantConfig, Structure
from svdq_edge.evaluation.data import DataError
from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.gptq import gptq_quantize
from svdq_edge.quant.packing import PackedWeight, pack, unpack
from svdq_edge.saliency import ScoreContext, get
from svdq_edge.saliency.svd import truncated_svd


@dataclass(frozen=True)
class ElementCorrection:
    """Kept individual weights, COO in row-major order.

    rows:   int32 [nnz] output indices.
    cols:   int32 [nnz] input indices.
    values: float32 [nnz] the kept weights W[rows, cols].
    """

    rows: Tensor
    cols: Tensor
    values: Tensor

    def dense(self, N: int, K: int) -> Tensor:
        S = torch.zeros(N, K)
        S[self.rows.long(), self.cols.long()] = self.values
        return S

    def problem(self, N: int, K: int) -> str | None:
        if not self.rows.shape == self.cols.shape == self.values.shape or self.values.dim() != 1:
            return f"rows, cols, values have shapes {[list(t.shape) for t in (self.rows, self.cols, self.values)]}"
        return _out_of_range(self.rows, N, "rows") or _out_of_range(self.cols, K, "cols") or _finite(self.values)


@dataclass(frozen=True)
class ChannelCorrection:
    """Kept input channels.

    channels: int64 [c] sorted input indices.
    values:   float32 [N, c] = W[:, channels].
    """

    channels: Tensor
    values: Tensor

    def dense(self, N: int, K: int) -> Tensor:
        S = torch.zeros(N, K)
        S[:, self.channels.long()] = self.values
        return S

    def problem(self, N: int, K: int) -> str | None:
        if self.channels.dim() != 1 or tuple(self.values.shape) != (N, self.channels.numel()):
            return f"channels {list(self.channels.shape)} and values {list(self.values.shape)} for a [{N}, {K}] weight"
        return _out_of_range(self.channels, K, "channels") or _finite(self.values)


@dataclass(frozen=True)
class LowRankCorrection:
    """Rank-r FP32 branch S = L @ R.

    L: float32 [N, r] = U_r diag(S_r).
    R: float32 [r, K] = V_r^T.
    """

    L: Tensor
    R: Tensor

    def dense(self, N: int, K: int) -> Tensor:
        return self.L @ self.R

    def problem(self, N: int, K: int) -> str | None:
        if self.L.dim() != 2 or self.R.dim() != 2 or self.L.shape[0] != N or self.R.shape[1] != K \
                or self.L.shape[1] != self.R.shape[0]:
            return f"L {list(self.L.shape)} and R {list(self.R.shape)} for a [{N}, {K}] weight"
        return _finite(self.L) or _finite(self.R)


@dataclass(frozen=True)
class BlockOffsetCorrection:
    """One FP32 offset per output row and block of g = K / nb consecutive inputs (GGUF's mins, Q4_1 and K-quants).

    M: float32 [N, nb]. S[n, k] = M[n, k // g], so y += (x summed over each g-block) @ M^T.
    """

    M: Tensor

    def group(self, K: int) -> int:
        nb = self.M.shape[1]
        if K % nb:
            raise ValueError(f"K={K} is not a whole number of {nb} offset blocks")
        return K // nb

    def dense(self, N: int, K: int) -> Tensor:
        return self.M.float().repeat_interleave(self.group(K), dim=1)

    def problem(self, N: int, K: int) -> str | None:
        if self.M.dim() != 2 or self.M.shape[0] != N or self.M.shape[1] == 0 or K % self.M.shape[1]:
            return f"M {list(self.M.shape)} for a [{N}, {K}] weight"
        return _finite(self.M)


def _out_of_range(index: Tensor, n: int, name: str) -> str | None:
    if index.numel() and (index.min() < 0 or index.max() >= n):
        return f"{name} hold indices outside [0, {n})"
    return None


def _finite(values: Tensor) -> str | None:
    return None if torch.isfinite(values).all() else "correction values hold NaN or infinity"


Correction = ElementCorrection | ChannelCorrection | LowRankCorrection | BlockOffsetCorrection
STRUCTURE_OF = {ElementCorrection: Structure.ELEMENT, ChannelCorrection: Structure.CHANNEL,
                LowRankCorrection: Structure.LOWRANK, BlockOffsetCorrection: Structure.BLOCK_OFFSET}


def correction_tensors(c: Correction | None) -> dict[str, Tensor]:
    """The correction's tensors by field name (empty when there is none)."""
    if c is None:
        return {}
    return {k: getattr(c, k) for k in c.__dataclass_fields__}


@dataclass(frozen=True)
class MixedWeight:
    """A weight as packed MatMulNBits codes plus an optional FP32 correction."""

    packed: PackedWeight
    correction: Correction | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.packed.N, self.packed.K

    @property
    def structure(self) -> Structure | None:
        return None if self.correction is None else STRUCTURE_OF[type(self.correction)]

    def problem(self) -> str | None:
        """Why the packed codes or the correction cannot be this weight; None when they can."""
        why = self.packed.problem()
        if why is None and self.correction is not None:
            why = self.correction.problem(*self.shape)
        return why

    def dequantize(self) -> Tensor:
        """W_hat float32 [N, K] = dequant(Q) + S."""
        W_hat = dequantize_blockwise(unpack(self.packed))
        if self.correction is not None:
            W_hat = W_hat + self.correction.dense(*self.shape)
        return W_hat

    def correction_nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in correction_tensors(self.correction).values())

    def bits_per_weight(self) -> float:
        """Storage bits per weight: codes + scales + zero points + correction values and indices."""
        N, K = self.shape
        return 8.0 * (self.packed.nbytes() + self.correction_nbytes()) / (N * K)

    def kept_fraction(self) -> float:
        """Share of the weight's parameter budget spent on the FP32 correction (values only)."""
        N, K = self.shape
        c = self.correction
        if c is None or isinstance(c, BlockOffsetCorrection):  # offsets are part of the format, not kept weights
            return 0.0
        n = c.values.numel() if not isinstance(c, LowRankCorrection) else c.L.numel() + c.R.numel()
        return n / (N * K)


def budget_rank(N: int, K: int, keep: float) -> int:
    """Rank whose FP32 branch costs keep * N * K values (at least 1 when keep > 0)."""
    return max(1, int(keep * N * K / (N + K))) if keep > 0 else 0


def decompose(W: Tensor, config: QuantConfig, ctx: ScoreContext | None = None,
              absmax: float | None = None) -> MixedWeight:
    """Split W [N, K] into packed codes plus a correction under `config`'s budget and structure.

    `ctx` carries what calibrated methods need (input_scale, hessian); the config fills in the rest. `absmax`: the
    range of a per-tensor int8 scale (`config.int8_scale` tensor), at least max |W|; the max over siblings the fused
    graph packs into one matmul, so that they share it; None: max |W|.
    """
    W = W.detach().float()
    if not torch.isfinite(W).all():
        raise ValueError("weight contains NaN or Inf")
    N, K = W.shape
    int8 = config.kernel is Kernel.INT8  # one symmetric block per output row: DynamicQuantizeMatMul's column scale
    block_size, symmetric = (K, True) if int8 else (config.block_size, config.symmetric)
    if int8 and config.int8_scale is Int8Scale.AUTO:
        raise ValueError("int8_scale auto is resolved per layer before decomposing (svdq_edge/quant/int8_scale.py)")
    if int8 and config.int8_scale is Int8Scale.TENSOR:
        absmax = float(W.abs().max()) if absmax is None else absmax
    elif absmax is not None:
        raise ValueError("absmax applies to int8-kernel layers with a per-tensor scale")
    ctx = replace(ctx or ScoreContext(), rank=config.rank, seed=config.seed, block_size=block_size,
                  symmetric=symmetric, bits=config.bits)
    method = get(config.method)
    quantize = _quantizer(config, ctx, method.error_feedback, absmax)
    keep = config.keep if method.keeps else 0.0

    if method.basis or config.structure is Structure.LOWRANK:
        r = budget_rank(N, K, keep)
        if r == 0:
            return MixedWeight(pack(quantize(W, None)[0]), None)
        if method.basis:  # the method's own subspace: S = W R R^T
            R = method.fn(W, replace(ctx, rank=r))
            corr = LowRankCorrection(L=(W @ R).contiguous(), R=R.T.contiguous())
        else:
            U, S, V = truncated_svd(W, r, config.seed)
            corr = LowRankCorrection(L=(U * S).contiguous(), R=V.T.contiguous())
        return MixedWeight(pack(quantize(W - corr.L @ corr.R, None)[0]), corr)

    scores = method.fn(W, ctx) if keep > 0 else None
    if scores is None:
        return MixedWeight(pack(quantize(W, None)[0]), None)
    mask = torch.zeros(N, K, dtype=torch.bool)
    if config.structure is Structure.CHANNEL:
        channels = torch.topk(scores.sum(dim=0), max(1, round(keep * K))).indices.sort().values
        mask[:, channels] = True
    else:
        flat = torch.topk(scores.reshape(-1), max(1, round(keep * N * K))).indices.sort().values
        mask.view(-1)[flat] = True
    q, W_src = quantize(W, mask)  # W_src: the kept weights' final values (updated by error feedback under GPTQ)
    if config.structure is Structure.CHANNEL:
        corr = ChannelCorrection(channels=channels.long(), values=W_src[:, channels].contiguous())
    else:
        corr = ElementCorrection(rows=(flat // K).int(), cols=(flat % K).int(),
                                 values=W_src.reshape(-1)[flat].contiguous())
    return MixedWeight(pack(q), corr)


def _quantizer(config: QuantConfig, ctx: ScoreContext, error_feedback: bool, absmax: float | None):
    """(W, exclude) -> (BlockQuant, W_src): round-to-nearest, or GPTQ error feedback under ctx.hessian."""
    quant = dict(bits=config.bits, block_size=ctx.block_size, symmetric=ctx.symmetric, clip=config.clip,
                 absmax=absmax)
    if not error_feedback:
        return lambda W, exclude: (quantize_blockwise(W, exclude=exclude, **quant), W)
    if ctx.hessian is None:
        raise DataError(f"method {config.method!r} needs calibration statistics (the layer's X^T X)")
    return lambda W, exclude: gptq_quantize(W, ctx.hessian, exclude=exclude, **quant)


def relative_error(W: Tensor, W_hat: Tensor) -> float:
    """||W - W_hat||_F / ||W||_F."""
    return float(torch.linalg.norm(W.float() - W_hat) / torch.linalg.norm(W.float()).clamp_min(1e-30))
