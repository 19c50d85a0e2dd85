"""Fold AWQ input scales into the model: find which op produces each linear's input, search s, rescale both.

A scale s [K] on a linear's input is only free when the op producing that input can absorb 1/s exactly and feeds
nothing else: a pre-norm's gain (Llama's RMSNorm, GPT-2's ln_1/ln_2), or the output rows of the previous linear
when only a per-channel-linear op sits between them (V -> attention -> O; up -> gate product -> down). Post-norm
encoders (BERT) send the norm's output into the residual stream too, so only V -> O folds there; their other
linears keep AWQ's saliency without scales. Groups come from a per-architecture table of module-name suffixes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers.pytorch_utils import Conv1D

from svdq_edge.calib.calibrate import LayerStats
from svdq_edge.config import QuantConfig
from svdq_edge.saliency import ScoreContext
from svdq_edge.saliency.awq import search_scale

# model_type -> (producer suffix, consumer linear suffixes sharing its output) within one block.
FOLD_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "llama": (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
              ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
              ("self_attn.v_proj", ("self_attn.o_proj",)),
              ("mlp.up_proj", ("mlp.down_proj",))),
    "gpt2": (("ln_1", ("attn.c_attn",)), ("ln_2", ("mlp.c_fc",))),
    "bert": (("attention.self.value", ("attention.output.dense",)),),
    "distilbert": (("attention.v_lin", ("attention.out_lin",)),),
}
FOLD_GROUPS["mistral"] = FOLD_GROUPS["qwen2"] = FOLD_GROUPS["llama"]


@dataclass(frozen=True)
class FoldGroup:
    producer: str
    linears: tuple[str, ...]


@dataclass(frozen=True)
class FoldReport:
    """One group's search. s: float32 [K] the folded scales (all ones when alpha = 0)."""

    group: FoldGroup
    alpha: float
    loss: float  # summed tr(dW H dW^T) of the group at the chosen scales
    loss_unscaled: float  # the same at s = 1
    s: Tensor

    def to_dict(self) -> dict:
        return {"producer": self.group.producer, "linears": list(self.group.linears), "alpha": self.alpha,
                "loss": self.loss, "loss_unscaled": self.loss_unscaled}


def folded_reference(W: dict[str, Tensor], X: dict[str, Tensor],
                     folds: list[FoldReport]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """FP32 weights [out, in] and layer inputs [rows, in] as they are after folding, so a folded quantized layer
    can be compared with its own FP32 reference (consumers: W diag(s), X / s; producers: rows of W / s)."""
    W, X = dict(W), dict(X)
    for f in folds:
        if f.alpha == 0:
            continue
        if f.group.producer in W:
            W[f.group.producer] = W[f.group.producer] / f.s[:, None]
        for n in f.group.linears:
            W[n] = W[n] * f.s[None, :]
            if n in X:
                X[n] = X[n] / f.s[None, :]
    return W, X


def fold_groups(model: nn.Module, targets: set[str]) -> list[FoldGroup]:
    """Producer/consumer groups of `model` whose consumers are all quantization targets and shapes fit."""
    table = FOLD_GROUPS.get(getattr(model.config, "model_type", ""), ())
    modules = dict(model.named_modules())
    groups = []
    for name, module in modules.items():
        for producer, consumers in table:
            if not (name == producer or name.endswith("." + producer)):
                continue
            prefix = name[: len(name) - len(producer)]
            linears = tuple(prefix + c for c in consumers)
            if not all(n in targets for n in linears):
                continue
            if _out_features(module) != _in_features(modules[linears[0]]):
                continue  # e.g. grouped-query attention: V has fewer outputs than O has inputs
            groups.append(FoldGroup(name, linears))
    return groups


def _in_features(m: nn.Module) -> int:
    return m.weight.shape[0] if isinstance(m, Conv1D) else m.weight.shape[-1]


def _out_features(m: nn.Module) -> int:
    if isinstance(m, Conv1D):
        return m.weight.shape[1]
    return m.weight.shape[0]  # nn.Linear [out, in]; norms [features]


@torch.no_grad()
def scale_inputs(module: nn.Module, s: Tensor) -> None:
    """W <- W diag(s) for a consumer linear (Conv1D stores W^T)."""
    if isinstance(module, Conv1D):
        module.weight.mul_(s[:, None])
    else:
        module.weight.mul_(s[None, :])


@torch.no_grad()
def unscale_outputs(module: nn.Module, s: Tensor) -> None:
    """Output y <- y / s for a producer: a norm (gain, bias) or a linear (rows of W, bias)."""
    if isinstance(module, Conv1D):
        module.weight.div_(s[None, :])
    elif module.weight.dim() == 2:
        module.weight.div_(s[:, None])
    else:
        module.weight.div_(s)
    if getattr(module, "bias", None) is not None:
        module.bias.div_(s)


def fold_awq_scales(model: nn.Module, stats: dict[str, LayerStats], config: QuantConfig, targets: set[str],
                    progress: bool = True) -> tuple[dict[str, LayerStats], list[FoldReport]]:
    """Search and fold scales for every group (in place); return the statistics of the rescaled inputs."""
    from svdq_edge.model.targets import linear_weight
    from svdq_edge.quant.decompose import decompose

    stats = dict(stats)
    reports = []
    groups = fold_groups(model, targets)
    for g in tqdm(groups, desc="awq scales", disable=not progress, leave=False):
        st = stats[g.linears[0]]
        if st.H is None:
            raise ValueError("awq scale search needs X^T X statistics from calibration")
        Ws = [linear_weight(model.get_submodule(n)).detach().float() for n in g.linears]

        def quantize(W_scaled: Tensor, s: Tensor, st=st) -> Tensor:
            ctx = ScoreContext(input_scale=st.mean_abs / s, hessian=st.H / (s[:, None] * s[None, :]))
            return decompose(W_scaled, config, ctx).dequantize()

        found = search_scale(Ws, st.mean_abs, st.H, quantize)
        if found.alpha > 0:
            unscale_outputs(model.get_submodule(g.producer), found.s)
            for n in g.linears:
                scale_inputs(model.get_submodule(n), found.s)
                stats[n] = stats[n].scaled(found.s)
        reports.append(FoldReport(g, found.alpha, found.loss, found.loss_unscaled, found.s))
    return stats, reports
