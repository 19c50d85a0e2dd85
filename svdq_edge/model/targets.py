"""Which modules of a model are quantized, and their weights as [out, in]."""

from __future__ import annotations

from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from svdq_edge.model.head import output_head


def linear_weight(module: nn.Module) -> Tensor:
    """The weight as [out, in] (transformers' GPT-2 Conv1D stores [in, out])."""
    return module.weight.T if isinstance(module, Conv1D) else module.weight


def find_targets(model: nn.Module, skip: tuple[str, ...], head_apart: bool = False) -> list[tuple[str, nn.Module]]:
    """Linears (and Conv1D) whose qualified name contains none of the `skip` substrings (and, with `head_apart`,
    not the output head, which `head.quantize_head` handles)."""
    head = output_head(model) if head_apart else None
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, Conv1D)) and not any(s in name for s in skip)
        and (head is None or m is not head[1])
    ]
