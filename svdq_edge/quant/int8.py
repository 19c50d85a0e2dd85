"""PyTorch reference of ONNX Runtime's DynamicQuantizeMatMul (the `int8` kernel), for parity checks.

The input is quantized per tensor to uint8 as DynamicQuantizeLinear does: range [min(0, min x), max(0, max x)],
scale = range / 255, zero point = round(-min / scale), codes = saturate(round(x / scale) + zero point), rounding half
to even. The product is integer (exact in float64 here), rescaled by a_scale * b_scale per output column.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dynamic_quantize(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x float [..., K] -> (codes uint8-valued float64, scale, zero point), one scale for the whole tensor."""
    x = x.double()
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-lo / scale), 0, 255)
    return torch.clamp(torch.round(x / scale) + zero, 0, 255), scale, zero


def dynamic_quant_matmul(x: Tensor, B: Tensor, b_scale: Tensor) -> Tensor:
    """y [..., N] = DynamicQuantizeMatMul(x [..., K], B int8 [N, K], b_scale [N]) without bias."""
    q, scale, zero = dynamic_quantize(x)
    return (((q - zero) @ B.double().T) * (scale * b_scale.double())).float()
