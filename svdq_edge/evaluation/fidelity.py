"""Layer-output fidelity: how much a quantized weight changes what the layer computes on real inputs."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def output_error(W: Tensor, W_hat: Tensor, X: Tensor) -> float:
    """||X (W - W_hat)^T||_F / ||X W^T||_F for X [rows, in], W, W_hat [out, in]."""
    X, W, W_hat = X.detach().float(), W.detach().float(), W_hat.detach().float()
    return float(torch.linalg.norm(X @ (W - W_hat).T) / torch.linalg.norm(X @ W.T).clamp_min(1e-30))


@torch.no_grad()
def capture_inputs(model: nn.Module, names: list[str], batches: Iterable[dict], max_rows: int = 4096,
                   seed: int = 0) -> dict[str, Tensor]:
    """Inputs X [rows, in] seen by each named module, padding tokens dropped, subsampled to `max_rows` rows."""
    rows: dict[str, list[Tensor]] = {n: [] for n in names}
    current_mask: list[Tensor] = []

    def hook(name):
        def fn(_m, inputs, _out):
            x = inputs[0].detach().float()
            x = x.reshape(-1, x.shape[-1])
            keep = current_mask[0].reshape(-1).bool()
            rows[name].append(x[keep] if keep.numel() == x.shape[0] else x)  # e.g. a pooler sees one token

        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        model.eval()
        for batch in batches:
            current_mask[:] = [batch["attention_mask"]]
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, parts in rows.items():
        X = torch.cat(parts)
        if X.shape[0] > max_rows:
            X = X[torch.randperm(X.shape[0], generator=g)[:max_rows]]
        out[n] = X
    return out
