"""Trace a Hugging Face model to ONNX with the input and output names Optimum's ORTModel classes use."""

from __future__ import annotations

import copy
import inspect
import logging
import warnings

import onnx
import torch
from torch import nn

from svdq_edge.embedding import QuantEmbedding
from svdq_edge.modules import QuantLinear, set_module
from svdq_edge.sources import ModelTask

log = logging.getLogger(__name__)

OUTPUT_NAME = {
    ModelTask.SEQUENCE_CLASSIFICATION: "logits",
    ModelTask.FEATURE_EXTRACTION: "last_hidden_state",
    ModelTask.CAUSAL_LM: "logits",
}
# Trace shapes: both axes > 1 so the exporter does not specialise them.
TRACE_BATCH, TRACE_SEQ = 2, 16


class _Head(nn.Module):
    """Calls the model with named inputs and returns the one output tensor the ONNX graph exposes."""

    def __init__(self, model: nn.Module, task: ModelTask, input_names: list[str]):
        super().__init__()
        self.model, self.task, self.input_names = model, task, input_names

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.task is ModelTask.CAUSAL_LM:
            kwargs["use_cache"] = False
        out = self.model(**kwargs)
        return out.last_hidden_state if self.task is ModelTask.FEATURE_EXTRACTION else out.logits


def input_names_for(model: nn.Module) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")
    return names


def dense_copy(model: nn.Module) -> tuple[nn.Module, dict[str, QuantLinear | QuantEmbedding]]:
    """A copy of `model` with every QuantLinear (QuantEmbedding) replaced by an nn.Linear (nn.Embedding) holding
    its effective weight.

    The exporter then traces an ordinary graph; the quantized layers are found again by their weights and swapped
    for MatMulNBits / GatherBlockQuantized (see splice.py).
    """
    dense = copy.deepcopy(model)
    quant = {n: m for n, m in dense.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))}
    for name, q in quant.items():
        if isinstance(q, QuantEmbedding):
            new = nn.Embedding(q.num_embeddings, q.embedding_dim, padding_idx=q.padding_idx)
            with torch.no_grad():
                new.weight.copy_(q.table())
        else:
            new = nn.Linear(q.in_features, q.out_features, bias=q.bias is not None)
            with torch.no_grad():
                new.weight.copy_(q.effective_weight())
                if q.bias is not None:
                    new.bias.copy_(q.bias)
        set_module(dense, name, new)
    return dense, quant


def trace_to_onnx(model: nn.Module, task: ModelTask, opset: int = 18) -> tuple[onnx.ModelProto, list[str], str]:
    """ONNX of `model` (no QuantLinear inside) with dynamic batch and sequence axes."""
    names = input_names_for(model)
    head = _Head(model, task, names).eval()
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (TRACE_BATCH, TRACE_SEQ), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in names:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    dims = {0: "batch", 1: "sequence"}
    output = OUTPUT_NAME[task]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            head, (), kwargs=inputs, dynamo=True, opset_version=opset, input_names=names, output_names=[output],
            dynamic_shapes={n: dims for n in names}, verbose=False,
        )
    return program.model_proto, names, output
