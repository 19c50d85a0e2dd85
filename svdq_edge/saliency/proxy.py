"""`proxy`: activation-aware saliency without data, |W_ij| * s_j.

s_j is a data-free estimate of input channel j's activation scale supplied by the caller (for a linear fed by a
LayerNorm, |gamma_j| + |beta_j|; for one fed by another linear, that linear's row norms). Without an estimate the
score falls back to |W|. With calibration statistics as s_j this is the AWQ-style score.
"""

from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register


@register("proxy", "|W_ij| * data-free activation-scale proxy s_j", uses_input_scale=True)
def proxy_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    if ctx.input_scale is None:
        return W.abs()
    return W.abs() * ctx.input_scale.to(W.dtype).reshape(1, -1)
