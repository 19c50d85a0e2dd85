"""`random`: a seeded random selection (the control any saliency method must beat)."""

import torch
from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register


@register("random", "uniformly random weights (seeded control)")
def random_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    g = torch.Generator().manual_seed(ctx.seed)
    return torch.rand(W.shape, generator=g)
