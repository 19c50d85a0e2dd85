"""GPTQ-style error feedback (Frantar et al. 2022) in the MatMulNBits block layout, with FP32 outliers (SpQR).

The layer output error on calibration inputs X is ||X (W - W_hat)^T||^2 = tr(dW H dW^T) with H = X^T X. Columns
are quantized left to right; each column's rounding error is pushed onto the columns not yet quantized through the
upper Cholesky factor of H^-1, which is the optimal (OBS) compensation. A block's scale and zero point are fixed
from its weights as they stand when GPTQ reaches the block (GPTQ's `groupsize` with static groups = our blocks).
Outliers (the `exclude` mask) are never rounded: their error is 0, their updated value goes to the FP32 correction.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdq_edge.quant.blockwise import BlockQuant, n_blocks, quantize_blockwise

DEFAULT_DAMP = 0.01  # damping added to diag(H), as a fraction of its mean (GPTQ's percdamp)


def damped(H: Tensor, damp: float = DEFAULT_DAMP) -> Tensor:
    """float64 [K, K]: H with dead inputs (zero diagonal) made harmless and damp * mean(diag) added to the diagonal."""
    H = H.double().clone()
    diag = H.diagonal()
    dead = diag <= 0
    diag[dead] = 1.0
    diag += damp * diag.mean()
    return H


def inverse_hessian_diag(H: Tensor, damp: float = DEFAULT_DAMP) -> Tensor:
    """float32 [K]: diag((H + damping)^-1), the OBS denominator of every input column."""
    return torch.cholesky_inverse(torch.linalg.cholesky(damped(H, damp))).diagonal().float()


def gptq_quantize(W: Tensor, H: Tensor, bits: int, block_size: int, symmetric: bool = False,
                  exclude: Tensor | None = None, clip: bool = False, absmax: float | None = None,
                  damp: float = DEFAULT_DAMP) -> tuple[BlockQuant, Tensor]:
    """Quantize W [N, K] with error feedback under H [K, K]; `absmax` as in `quantize_blockwise` (block ranges are
    taken before any feedback reaches the block, so it bounds them when it bounds |W| and one block spans K).

    Returns the codes (excluded and padded positions coded as the zero point, as `quantize_blockwise` does) and
    W_upd float32 [N, K], the weights after error feedback: at excluded positions it holds the FP32 values to keep.
    """
    W = W.detach().double().clone()
    N, K = W.shape
    keep = torch.zeros(N, K, dtype=torch.bool) if exclude is None else exclude.bool()
    Hd = damped(H, damp)
    W[:, H.diagonal() <= 0] = 0.0  # inputs never active carry no information
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hd)), upper=True)  # [K, K]
    nb = n_blocks(K, block_size)
    qmax = 2**bits - 1
    codes = torch.zeros(N, nb * block_size, dtype=torch.uint8)
    scales = torch.zeros(N, nb)
    zeros = torch.zeros(N, nb, dtype=torch.uint8)
    for b in range(nb):
        i1, i2 = b * block_size, min((b + 1) * block_size, K)
        W1, keep1 = W[:, i1:i2].clone(), keep[:, i1:i2]
        ref = quantize_blockwise(W1.float(), bits, block_size, symmetric, exclude=keep1, clip=clip,
                                 absmax=absmax)
        scale, zero = ref.scale[:, 0].double(), ref.zero[:, 0].double()
        scales[:, b], zeros[:, b] = ref.scale[:, 0], ref.zero[:, 0]
        codes[:, i2 : (b + 1) * block_size] = ref.zero[:, :1]  # padding (last block only) dequantizes to 0
        E = torch.zeros_like(W1)
        for j in range(i2 - i1):
            w = W1[:, j]
            q = torch.clamp(torch.round(w / scale) + zero, 0, qmax)
            q = torch.where(keep1[:, j], zero, q)
            w_hat = torch.where(keep1[:, j], w, (q - zero) * scale)
            codes[:, i1 + j] = q.to(torch.uint8)
            err = (w - w_hat) / U[i1 + j, i1 + j]
            W1[:, j + 1 :] -= err[:, None] * U[i1 + j, i1 + j + 1 : i2][None, :]
            E[:, j] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= E @ U[i1:i2, i2:]
    bq = BlockQuant(codes=codes, scale=scales, zero=zeros, K=K, bits=bits, block_size=block_size)
    return bq, W.float()
