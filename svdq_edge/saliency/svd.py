"""SVD-based saliency (data-free).

`svd` (the paper's score): |(U_r S_r V_r^T)_ij|, the magnitude of each weight's projection onto the top-r principal
components of W. `svd-residual`: |(W - U_r S_r V_r^T)_ij|, how far a weight sits from the low-rank structure, i.e.
the outliers that the principal components do not explain.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register

SVD_DEFAULT_RANK = 64
RESIDUAL_DEFAULT_RANK = 4
# Above this many elements a randomized SVD replaces the full one when only a few components are needed.
FULL_SVD_MAX_ELEMENTS = 4_000_000


def resolve_rank(W: Tensor, rank: int | float) -> int:
    """An integer rank from an int or from a fraction of spectral energy sum(s_i^2)."""
    full = min(W.shape)
    if isinstance(rank, float) and 0.0 < rank < 1.0:
        s2 = torch.linalg.svdvals(W.float()) ** 2
        cum = torch.cumsum(s2, 0) / s2.sum()
        return int(torch.searchsorted(cum, torch.tensor(rank)).item()) + 1
    return max(1, min(int(rank), full))


def truncated_svd(W: Tensor, rank: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """U [N, r], S [r], V [K, r] of the rank-r truncation of W [N, K] (randomized for large W and small r)."""
    W = W.float()
    if W.numel() > FULL_SVD_MAX_ELEMENTS and rank * 4 < min(W.shape):
        torch.manual_seed(seed)  # svd_lowrank draws its sketch from the global generator
        U, S, V = torch.svd_lowrank(W, q=min(rank + 10, min(W.shape)), niter=4)
        return U[:, :rank], S[:rank], V[:, :rank]
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :rank], S[:rank], Vh[:rank].T


def low_rank(W: Tensor, rank: int | float, seed: int = 0) -> Tensor:
    """W_r = U_r S_r V_r^T, [N, K]."""
    U, S, V = truncated_svd(W, resolve_rank(W, rank), seed)
    return (U * S) @ V.T


@register("svd", "|W_r|, projection on the top-r principal components (paper)")
def svd_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    return low_rank(W, ctx.rank or SVD_DEFAULT_RANK, ctx.seed).abs()


@register("svd-residual", "|W - W_r|, distance from the top-r principal components")
def svd_residual_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    return (W.float() - low_rank(W, ctx.rank or RESIDUAL_DEFAULT_RANK, ctx.seed)).abs()
