"""Per-tensor or per-column weight scales for the int8 kernel, chosen per packed group.

ONNX Runtime's DynamicQuantizeMatMul folds a per-tensor weight scale into its GEMM's output step, but applies a
per-column scale in a second pass over the output: on MiniLM (24 int8 layers, 1 x 128 tokens) per-column scales cost
3% of the model's latency, what separates our int8 kernel from INT8 dynamic's speed (docs/encoders.md). One scale per
tensor costs fidelity where output channels differ in range: in BERT encoders the FFN output projections write the
residual stream's outlier dimensions (one column ~40x the median on MiniLM's first layer), and per-tensor scales
there cost most of the fidelity; on the other layers they cost little.

`auto` measures it instead of naming layers: each packed group (q/k/v share one matmul, hence one scale) is quantized
both ways and swapped alone into the model (`calib.sensitivity`, random token sequences, no data); groups take a
per-tensor scale in order of the output error it adds, while the added error stays within GROWTH times the error of
all groups at per-column scales (the groups' errors are taken to add up, as for mixed precision). The sensitivity
sees weight rounding only; at run time the int8 kernel also rounds its input per tensor, which dominates its error,
so the weight error may grow severalfold at little cost end to end (MiniLM: all groups but the FFN outputs per
tensor moved mean cosine from 0.9922 to 0.9908 under ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from svdq_edge.config import Int8Scale, Kernel, QuantConfig
from svdq_edge.quant.mixed_bits import packed_groups

GROWTH = 3.0  # allowed growth of the int8 groups' summed weight-rounding sensitivity (see above)

Group = tuple[str, ...]


def group_absmax(groups: list[list[str]], weight: Callable[[str], Tensor]) -> dict[str, float]:
    """{layer: max |W| over its group}: the range of one scale shared by the siblings packed into one matmul."""
    out = {}
    for group in groups:
        m = max(float(weight(n).detach().abs().max()) for n in group)
        out.update(dict.fromkeys(group, m))
    return out


def tensor_ranges(config: QuantConfig, names: list[str], weight: Callable[[str], Tensor]) -> dict[str, float]:
    """{layer: absmax} of the int8 layers that `config` (resolved: not an unresolved auto) puts on one scale per
    tensor, shared within their packed groups; `weight` reads a layer's W."""
    layers = {n: config.for_layer(n) for n in names}
    tensor = [n for n, c in layers.items() if c.kernel is Kernel.INT8 and c.int8_scale is Int8Scale.TENSOR]
    return group_absmax(packed_groups(tensor), weight)


def choose_scales(column: dict[Group, float], tensor: dict[Group, float],
                  growth: float = GROWTH) -> dict[str, Int8Scale]:
    """{layer: scale}: groups take TENSOR by the smallest added sensitivity first while the sum over all groups stays
    within `growth` times the all-COLUMN sum; the rest keep COLUMN. column/tensor: group -> sensitivity."""
    if set(column) != set(tensor):
        raise ValueError("column and tensor sensitivities must cover the same groups")
    total = sum(column.values())
    cap = growth * total
    chosen = dict.fromkeys((n for g in column for n in g), Int8Scale.COLUMN)
    for group in sorted(column, key=lambda g: tensor[g] - column[g]):
        extra = tensor[group] - column[group]
        if total + extra > cap:
            break
        total += max(extra, 0.0)
        chosen.update(dict.fromkeys(group, Int8Scale.TENSOR))
    return chosen
