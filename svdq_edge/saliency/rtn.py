"""`rtn`: plain round-to-nearest, nothing kept in FP32 (the baseline every method is compared with)."""

from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register


@register("rtn", "round-to-nearest, keeps nothing", keeps=False)
def rtn_scores(W: Tensor, ctx: ScoreContext) -> None:
    return None
