"""The one quantize loop over a model's linears, whatever holds their weights (the model in memory, or lazily read
safetensors shards): read W, check it, decompose, report, swap in the QuantLinear. pipeline/apply.py and
pipeline/stream.py differ only in where W, the bias and the saliency context come from."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from svdq_edge.config import QuantConfig
from svdq_edge.model.modules import QuantLinear, set_module
from svdq_edge.pipeline.report import QuantReport, layer_report
from svdq_edge.quant.decompose import MixedWeight, decompose
from svdq_edge.saliency import ScoreContext
from svdq_edge.sources.load import ModelSourceError

WeightOf = Callable[[str, nn.Module], Tensor]  # (name, module) -> W [out, in] float32
BiasOf = Callable[[str, nn.Module], Tensor | None]  # (name, module) -> bias [out] or None


def check_finite(name: str, W: Tensor) -> None:
    if not torch.isfinite(W).all():
        raise ModelSourceError(f"layer {name}: weight contains NaN or Inf")


def quantize_linears(model: nn.Module, names: list[str], config: QuantConfig, report: QuantReport,
                     weight_of: WeightOf, bias_of: BiasOf, context_of: Callable[[str], ScoreContext] | None = None,
                     absmax: dict[str, float] | None = None, chosen: dict[str, MixedWeight] | None = None,
                     progress: bool = True) -> None:
    """Replace each named linear by its QuantLinear under `config.for_layer(name)`, in order, one at a time.

    `context_of(name)`: what the saliency method may read (input scales, X^T X); `absmax`: shared per-tensor int8
    ranges of packed siblings; `chosen`: layers already decomposed (by the bit budget or the int8 scale search),
    used as they are. Each layer's FP32 weight is released before the next is read."""
    absmax, chosen = absmax or {}, dict(chosen or {})
    for name in tqdm(names, desc=f"quantize {config.method} W{config.bits}", disable=not progress):
        module = model.get_submodule(name)
        W = weight_of(name, module)
        check_finite(name, W)
        layer = config.for_layer(name)
        ctx = ScoreContext() if context_of is None else context_of(name)
        mixed = chosen.pop(name, None) or decompose(W, layer, ctx, absmax.get(name))
        report.layers.append(layer_report(name, W, mixed))
        set_module(model, name, QuantLinear(mixed, bias_of(name, module), layer.kernel.value))
        del module, W, mixed
