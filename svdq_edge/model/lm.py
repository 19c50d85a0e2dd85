"""PyTorch references for causal LMs: greedy decoding with a KV cache and the log-likelihood of a window."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import DynamicCache


@torch.no_grad()
def greedy_ids(model: nn.Module, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """`max_new_tokens` argmax tokens after the prompt (end-of-sequence ids do not stop it: a fixed-length
    reference to compare other runtimes with)."""
    model.eval()
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([prompt_ids])
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits
        tok = int(logits[0, -1].argmax())
        out.append(tok)
        ids = torch.tensor([[tok]])
    return out


def target_nll(logits: Tensor, ids: Tensor, n_targets: int) -> float:
    """Summed negative log-likelihood of the last `n_targets` tokens of ids [L] under logits [L, vocab]
    (logits[t] predicts ids[t + 1]; the first token is never a target)."""
    L = ids.shape[0]
    n = min(n_targets, L - 1)
    logp = torch.log_softmax(logits[L - 1 - n : L - 1].double(), dim=-1)
    return float(-logp.gather(1, ids[L - n :, None]).sum())


@torch.no_grad()
def torch_window_nll(model: nn.Module, ids: Tensor, n_targets: int) -> float:
    """target_nll of one window ids [L] under a PyTorch causal LM."""
    logits = model(input_ids=ids[None], use_cache=False).logits[0]
    return target_nll(logits, ids, n_targets)
