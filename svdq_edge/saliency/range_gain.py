"""`range`: keep the weights whose removal shrinks their block's quantization range the most (data-free).

A block's rounding error grows with the square of its step, i.e. with range^2, for every weight in it. Taking a
weight out of the block pays only when that weight sets the range and stands apart from the next one. Per block,
weights are peeled greedily from whichever end of the sorted block (the range always contains 0, as the quantizer's
does) frees the larger gap; each peeled weight scores the drop in (remaining count x range^2) it buys. Scores are made
non-increasing along each block's peel order, so a global top-k takes a prefix of every block's order: the greedy
optimum of the summed block error proxy under the budget. Unpeeled weights score below every peeled one, by |W|.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register

MAX_PEEL = 16  # at most this many weights per block are considered (1% of a 128-block is ~1.3 on average)


def peel_gains(W: Tensor, block_size: int, symmetric: bool = False, max_peel: int = MAX_PEEL) -> Tensor:
    """Scores [N, K]: the block-error drop each weight's removal buys, in the greedy peel order."""
    N, K = W.shape
    nb = -(-K // block_size)
    pad = nb * block_size - K
    Wf = W.float()
    # Padding with 0 never changes a range that already contains 0.
    Wb = torch.nn.functional.pad(Wf, (0, pad)).reshape(N * nb, block_size)
    v, order = (Wb.abs() if symmetric else Wb).sort(dim=-1)
    rows = torch.arange(N * nb)
    lo = torch.zeros(N * nb, dtype=torch.long)
    hi = torch.full((N * nb,), block_size - 1, dtype=torch.long)
    scores = torch.zeros_like(Wb)
    count = torch.full((N * nb,), float(block_size))

    def span(lo_i: Tensor, hi_i: Tensor) -> Tensor:
        if symmetric:
            return v[rows, hi_i]
        return v[rows, hi_i].clamp(min=0) - v[rows, lo_i].clamp(max=0)

    prev = torch.full((N * nb,), float("inf"))
    for _ in range(min(max_peel, block_size - 1)):
        r_now = span(lo, hi)
        r_hi = span(lo, hi - 1)  # after dropping the largest
        r_lo = r_hi if symmetric else span(lo + 1, hi)  # after dropping the smallest
        take_hi = r_hi <= r_lo
        r_new = torch.where(take_hi, r_hi, r_lo)
        gain = count * r_now**2 - (count - 1) * r_new**2
        gain = torch.minimum(gain, prev)  # non-increasing along the peel order
        prev = gain
        pos = torch.where(take_hi, hi, lo)
        scores[rows, order[rows, pos]] = gain
        hi = torch.where(take_hi, hi - 1, hi)
        lo = torch.where(take_hi, lo, lo + 1)
        count = count - 1
    # Unpeeled weights rank below every peeled one (gains are >= 0), ordered by magnitude.
    floor = Wb.abs() / (Wb.abs().max() + 1) * 1e-30
    scores = torch.where(scores > 0, scores, floor)
    return scores.reshape(N, nb * block_size)[:, :K]


@register("range", "greedy per-block range reduction (block error drop per kept weight)")
def range_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    return peel_gains(W, ctx.block_size, ctx.symmetric)
