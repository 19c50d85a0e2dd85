"""`magnitude`: keep the largest |W| (they stretch their block's range the most)."""

from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register


@register("magnitude", "largest |W_ij|")
def magnitude_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    return W.abs()
