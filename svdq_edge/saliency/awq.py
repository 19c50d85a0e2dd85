"""`awq` (calibrated): activation-aware saliency and AWQ's per-input-channel scale search (Lin et al. 2023).

Saliency |W_ij| * mean|x_j|: a weight matters in proportion to the activation it multiplies. The scale search picks
s = mean|x|^alpha (alpha on a grid in [0, 1]) for a group of linears sharing one input, minimising their summed
layer output error when W diag(s) is quantized and the input is divided by s:
    loss(s) = sum_W tr(dW H dW^T),  dW = W - Q(W diag(s)) diag(1/s),  H = X^T X / n.
Using H instead of replaying activations makes the search a pure function of the statistics. The caller folds 1/s
into the op that produces the input (a norm's gain, or the rows of the previous linear), so the exported graph is
still plain MatMulNBits + correction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register

DEFAULT_GRID = 20


@register("awq", "|W_ij| * mean|x_j| from calibration; input scales searched and folded (AWQ)",
          needs_calibration=True, uses_input_scale=True, scale_search=True)
def awq_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    if ctx.input_scale is None:
        raise ValueError("method 'awq' needs calibration statistics (mean |x| per input channel)")
    return W.abs().float() * ctx.input_scale[None, :].float()


@dataclass(frozen=True)
class ScaleSearch:
    """s: float32 [K] (mean|x|^alpha, normalised to geometric mean 1); alpha; loss at alpha and at s = 1."""

    s: Tensor
    alpha: float
    loss: float
    loss_unscaled: float


def output_loss(W: Tensor, W_hat: Tensor, H: Tensor) -> float:
    """tr((W - W_hat) H (W - W_hat)^T): squared layer output error per calibration row."""
    dW = (W - W_hat).double()
    return float(((dW @ H.double()) * dW).sum())


def search_scale(Ws: list[Tensor], x_mean: Tensor, H: Tensor, quantize: Callable[[Tensor, Tensor], Tensor],
                 grid: int = DEFAULT_GRID) -> ScaleSearch:
    """Best s for linears Ws ([N_i, K] each) sharing an input with mean |x| `x_mean` [K] and moment H [K, K].

    quantize(W_scaled, s) -> W_hat_scaled: the quantizer applied to W diag(s), told s so it can rescale any
    statistics it uses. alpha = 0 (s = 1) is on the grid, so the result is never worse than no scaling.
    """
    x = x_mean.float().clamp_min(1e-8)
    best: ScaleSearch | None = None
    base = 0.0
    for i in range(grid + 1):
        alpha = i / grid
        s = x**alpha
        s = s / torch.exp(torch.log(s).mean())  # geometric mean 1 keeps the scaled weights' range comparable
        loss = sum(output_loss(W, quantize(W * s[None, :], s) / s[None, :], H) for W in Ws)
        if i == 0:
            base = loss
        if best is None or loss < best.loss:
            best = ScaleSearch(s, alpha, loss, base)
    return best
