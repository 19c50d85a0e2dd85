"""QuantLinear: the PyTorch reference of an exported MatMulNBits + FP32-correction layer."""

from __future__ import annotations

from torch import Tensor, nn

from svdq_edge.quant.decompose import (
    BlockOffsetCorrection,
    ChannelCorrection,
    ElementCorrection,
    LowRankCorrection,
    MixedWeight,
    correction_tensors,
)
from svdq_edge.quant.packing import PackedWeight

CORRECTION_TYPES = {"element": ElementCorrection, "channel": ChannelCorrection, "lowrank": LowRankCorrection,
                    "block-offset": BlockOffsetCorrection}
PACKED_FIELDS = ("B", "scales", "zero_points")


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted path of `module` inside `model`."""
    return next(n for n, m in model.named_modules() if m is module)


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` at the dotted path `name` inside `model` (replacing what is there)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


class QuantLinear(nn.Module):
    """y = x @ (dequant(Q) + S)^T + bias, with Q in the exact MatMulNBits layout.

    Buffers: B, scales, zero_points (see PackedWeight) and the correction's fields prefixed `corr_`
    (see ElementCorrection / ChannelCorrection / LowRankCorrection). The effective FP32 weight is rebuilt once,
    on first use, and not saved: the state dict holds only the packed form.
    """

    def __init__(self, mixed: MixedWeight, bias: Tensor | None, kernel: str = "matmulnbits"):
        """`kernel`: "matmulnbits" or "int8" (config.Kernel): which ONNX Runtime op the exporter emits."""
        super().__init__()
        self.kernel = kernel
        p = mixed.packed
        self.in_features, self.out_features = p.K, p.N
        self.bits, self.block_size = p.bits, p.block_size
        self.structure = None if mixed.structure is None else mixed.structure.value
        for name in PACKED_FIELDS:
            self.register_buffer(name, getattr(p, name))
        for name, t in correction_tensors(mixed.correction).items():
            self.register_buffer(f"corr_{name}", t)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        self._W_eff: Tensor | None = None

    @property
    def mixed(self) -> MixedWeight:
        packed = PackedWeight(self.B, self.scales, self.zero_points, self.in_features, self.out_features,
                              self.bits, self.block_size)
        corr = None
        if self.structure is not None:
            cls = CORRECTION_TYPES[self.structure]
            corr = cls(**{f: getattr(self, f"corr_{f}") for f in cls.__dataclass_fields__})
        return MixedWeight(packed, corr)

    def layer_meta(self) -> dict:
        """What, beside the buffers, rebuilds this layer (saved in the quantized folder's JSON)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "block_size": self.block_size, "structure": self.structure, "bias": self.bias is not None,
                "kernel": self.kernel}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict[str, Tensor]) -> QuantLinear:
        """Rebuild from `layer_meta()` and the buffers by their local names (B, scales, corr_values, ...)."""
        packed = PackedWeight(tensors["B"], tensors["scales"], tensors["zero_points"], meta["in_features"],
                              meta["out_features"], meta["bits"], meta["block_size"])
        corr = None
        if meta["structure"] is not None:
            c = CORRECTION_TYPES[meta["structure"]]
            corr = c(**{f: tensors[f"corr_{f}"] for f in c.__dataclass_fields__})
        return cls(MixedWeight(packed, corr), tensors["bias"] if meta["bias"] else None,
                   meta.get("kernel", "matmulnbits"))

    def effective_weight(self) -> Tensor:
        if self._W_eff is None or self._W_eff.device != self.B.device:
            self._W_eff = self.mixed.dequantize().to(self.B.device)
        return self._W_eff

    def forward(self, x: Tensor) -> Tensor:
        W = self.effective_weight()
        return nn.functional.linear(x, W.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, bits={self.bits}, block={self.block_size}, "
                f"correction={self.structure}, kernel={self.kernel}")
