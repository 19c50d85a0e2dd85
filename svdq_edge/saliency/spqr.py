"""Hessian-based methods (calibrated): `spqr` outliers + GPTQ error feedback, and `gptq` alone.

SpQR's outlier sensitivity of weight (i, j) is the OBS cost of forcing it to its rounded value while the rest of
row i compensates optimally: (w_ij - q(w_ij))^2 / [H^-1]_jj, with H = X^T X from calibration. The largest are kept
in FP32; everything else is quantized with GPTQ error feedback (`svdq_edge.quant.gptq`).
"""

from __future__ import annotations

from torch import Tensor

from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.gptq import DEFAULT_DAMP, inverse_hessian_diag
from svdq_edge.saliency.registry import ScoreContext, register


def require_hessian(ctx: ScoreContext, method: str) -> Tensor:
    if ctx.hessian is None:
        raise ValueError(f"method {method!r} needs calibration statistics (the layer's X^T X); give calibration data")
    return ctx.hessian


def obs_sensitivity(W: Tensor, H: Tensor, W_target: Tensor, damp: float = DEFAULT_DAMP) -> Tensor:
    """[N, K]: loss increase (W - W_target)^2 / [H^-1]_jj of moving each weight alone to its target, others optimal.

    Loss = tr(dW H dW^T), i.e. the squared layer output error per calibration row when H = X^T X / n (damped).
    """
    return (W.float() - W_target) ** 2 / inverse_hessian_diag(H, damp)[None, :]


@register("spqr", "(w - q(w))^2 / [H^-1]_jj outliers (SpQR) + GPTQ error feedback on the rest",
          needs_calibration=True, error_feedback=True)
def spqr_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    H = require_hessian(ctx, "spqr")
    W_rtn = dequantize_blockwise(quantize_blockwise(W, ctx.bits, ctx.block_size, ctx.symmetric))
    return obs_sensitivity(W, H, W_rtn)


@register("gptq", "GPTQ error feedback, no FP32 outliers", needs_calibration=True, error_feedback=True,
          keeps=False)
def gptq_scores(W: Tensor, ctx: ScoreContext) -> None:
    require_hessian(ctx, "gptq")
    return None
