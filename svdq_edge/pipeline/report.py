"""What quantizing a model did, per layer and in total: saved with the artifact and shown by `inspect`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import Tensor

from svdq_edge.calib.awq_fold import FoldReport
from svdq_edge.config import QuantConfig
from svdq_edge.quant.decompose import MixedWeight, relative_error


@dataclass(frozen=True)
class LayerReport:
    name: str
    shape: tuple[int, int]  # [out, in]
    bits_per_weight: float
    rel_error: float  # ||W - W_hat||_F / ||W||_F
    kept: float  # FP32 share of the layer's weights
    structure: str | None


@dataclass
class QuantReport:
    config: QuantConfig
    layers: list[LayerReport] = field(default_factory=list)
    seconds: float = 0.0
    folds: list[FoldReport] = field(default_factory=list)  # AWQ scale groups (empty for other methods)
    notes: list[str] = field(default_factory=list)  # what a user should know about how the method ran

    def mean_bits(self) -> float:
        """Weight-count-weighted bits per weight over the quantized layers."""
        n = sum(r.shape[0] * r.shape[1] for r in self.layers)
        return sum(r.bits_per_weight * r.shape[0] * r.shape[1] for r in self.layers) / max(n, 1)

    def mean_rel_error(self) -> float:
        return sum(r.rel_error for r in self.layers) / max(len(self.layers), 1)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "seconds": self.seconds, "mean_bits": self.mean_bits(),
                "layers": [asdict(r) for r in self.layers], "awq_folds": [f.to_dict() for f in self.folds],
                "notes": list(self.notes)}


def layer_report(name: str, W: Tensor, mixed: MixedWeight) -> LayerReport:
    """The report row of one layer quantized from W [N, K] into `mixed`."""
    return LayerReport(name, tuple(W.shape), mixed.bits_per_weight(), relative_error(W, mixed.dequantize()),
                       mixed.kept_fraction(), None if mixed.structure is None else mixed.structure.value)
