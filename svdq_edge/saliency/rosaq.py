"""`rosaq` (calibrated): the FP32 part is the layer's top-r principal input subspace (PCA of calibration activations).

With R = the top-r eigenvectors of H = X^T X / n (uncentered, as the output X W^T is), the layer splits exactly as
    W = W R R^T + W (I - R R^T)
The first term is the FP32 low-rank branch L R^T with L = W R [N, r] (ONNX: MatMul by R then Gemm by L^T, the same
stock-op branch as the `lowrank` structure); the second, the residual in the original basis, is block-quantized, so
MatMulNBits stays untouched. What the inputs mostly carry (the top-r directions) passes through FP32 weights; the
residual still meets rounding error on every input, but its range is smaller where W R R^T held W's large entries
(outlier input channels line up with the dominant activation directions). Cost: r (N + K) FP32 values plus one
extra [tokens, K] x [K, r] matmul, the same budget and graph as the SVD lowrank structure.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register
from svdq_edge.saliency.spqr import require_hessian


def principal_input_basis(H: Tensor, rank: int) -> Tensor:
    """R float32 [K, r]: orthonormal eigenvectors of H [K, K] with the r largest eigenvalues."""
    evals, evecs = torch.linalg.eigh(H.double())
    order = torch.argsort(evals, descending=True)[:rank]
    return evecs[:, order].float().contiguous()


@register("rosaq", "FP32 branch on the top-r principal input directions (PCA of activations), residual INT",
          needs_calibration=True, basis=True)
def rosaq_basis(W: Tensor, ctx: ScoreContext) -> Tensor:
    if not isinstance(ctx.rank, int):
        raise ValueError("rosaq needs an integer rank in its context (set from the keep budget)")
    return principal_input_basis(require_hessian(ctx, "rosaq"), ctx.rank)
