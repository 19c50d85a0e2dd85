"""End-to-end layer sensitivity for mixed precision, data-free: how far the model's output moves when one group of
linears alone is quantized.

A layer's own output error is a poor guide to what it does to the model (docs/results.md: assigning 8 bits by
relative layer error lost to a plain "last layers first" order on MiniLM at every budget). So each group is swapped
for its quantized version, the model runs on random token sequences (no dataset: the same inputs as the data-free
activation scales), and the group's sensitivity is the squared distance of the output from the FP32 one, relative to
its squared norm. The output is what a user consumes: the logits of a classifier or LM, the mean-pooled last hidden
state of a feature extractor (token-level hidden states weigh per-token noise that pooling averages out, and chose
worse layers on MiniLM). Groups are then assumed to add up (`svdq_edge.quant.mixed_bits`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from svdq_edge.model.modules import QuantLinear, set_module
from svdq_edge.quant.decompose import MixedWeight


@torch.no_grad()
def model_output(model: nn.Module, ids: Tensor) -> Tensor:
    """float32: the logits when the model has a head ([n_seqs, (seq_len,) classes]), else the mean-pooled last
    hidden state [n_seqs, hidden]."""
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    logits = getattr(out, "logits", None)
    return (logits if logits is not None else out.last_hidden_state.mean(dim=1)).float()


@torch.no_grad()
def group_sensitivity(model: nn.Module, groups: list[list[str]], quantized: dict[str, MixedWeight], ids: Tensor,
                      progress: bool = True) -> dict[tuple[str, ...], float]:
    """{group: ||h_q - h||^2 / ||h||^2} with only that group's linears replaced by `quantized` (restored after)."""
    model.eval()
    ref = model_output(model, ids)
    norm = ref.pow(2).sum().clamp_min(1e-30)
    out = {}
    for group in tqdm(groups, desc="sensitivity", disable=not progress):
        originals = {n: model.get_submodule(n) for n in group}
        try:
            for n, m in originals.items():
                set_module(model, n, QuantLinear(quantized[n], m.bias))
            out[tuple(group)] = float((model_output(model, ids) - ref).pow(2).sum() / norm)
        finally:
            for n, m in originals.items():
                set_module(model, n, m)
    return out
