"""Trace a Hugging Face model to ONNX with the input and output names Optimum's ORTModel classes use."""

from __future__ import annotations

import copy
import inspect
import logging
import warnings

import onnx
import torch
from torch import nn

from svdq_edge.model.embedding import QuantEmbedding
from svdq_edge.model.modules import QuantLinear
from svdq_edge.sources.load import ModelTask

log = logging.getLogger(__name__)

OUTPUT_NAME = {
    ModelTask.SEQUENCE_CLASSIFICATION: "logits",
    ModelTask.FEATURE_EXTRACTION: "last_hidden_state",
}  # causal LMs are traced with their KV cache by exporters/traced/decoder.py
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
        out = self.model(**kwargs)
        return out.last_hidden_state if self.task is ModelTask.FEATURE_EXTRACTION else out.logits


def input_names_for(model: nn.Module, tokenizer=None) -> list[str]:
    """The graph inputs: input_ids, attention_mask, and token_type_ids only where they mean something, i.e. the
    model takes them, has more than one token type (RoBERTa and XLM-R have one), and the tokenizer (when known)
    produces them; an input no tokenizer fills would make every caller invent it."""
    names = ["input_ids", "attention_mask"]
    takes = "token_type_ids" in inspect.signature(model.forward).parameters
    types = getattr(model.config, "type_vocab_size", 2)
    given = tokenizer is None or "token_type_ids" in getattr(tokenizer, "model_input_names", ["token_type_ids"])
    if takes and types > 1 and given:
        names.append("token_type_ids")
    return names


class TracePlaceholder(nn.Module):
    """Stands in for a QuantLinear while tracing: one `svdq_edge::QuantLinear` node named after the layer, which
    splice.py replaces by MatMulNBits + correction. No dense weight is materialised."""

    def __init__(self, layer: str, out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.layer, self.out_features = layer, out_features
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.onnx.ops.symbolic("svdq_edge::QuantLinear", (x,), attrs={"layer": self.layer}, dtype=x.dtype,
                                    shape=(*x.shape[:-1], self.out_features), version=1)
        return y if self.bias is None else y + self.bias


class _ScaledEmbedding(nn.Embedding):
    """Traces as Gather (spliced to GatherBlockQuantized) then, for a scaled table, Mul."""

    scale: float = 1.0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = super().forward(ids)
        return rows if self.scale == 1.0 else rows * self.scale


def dense_copy(model: nn.Module) -> tuple[nn.Module, dict[str, QuantLinear | QuantEmbedding]]:
    """A shallow stand-in of `model` for tracing: every QuantLinear becomes a TracePlaceholder and every
    QuantEmbedding an nn.Embedding holding its dequantized table (found again by content, see splice.py).

    Returns it with the original quantized modules by name. Unquantized parameters are shared, not copied.
    """
    quant = {n: m for n, m in model.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))}
    swapped = {}
    for name, q in quant.items():
        if isinstance(q, QuantEmbedding):
            new = _ScaledEmbedding(q.num_embeddings, q.embedding_dim, padding_idx=q.padding_idx)
            new.scale = q.scale
            with torch.no_grad():
                new.weight.copy_(q.table())
        else:
            new = TracePlaceholder(name, q.out_features, q.bias)
        swapped[name] = new
    dense = copy.copy(model)  # module tree rebuilt below; parameters shared with `model`
    _rebuild_with(dense, model, swapped)
    return dense, quant


def _rebuild_with(dst: nn.Module, src: nn.Module, swapped: dict[str, nn.Module], prefix: str = "") -> None:
    """Give `dst` (a shallow copy of `src`) its own child modules, recursively, with `swapped` ones replaced."""
    dst._modules = dict(src._modules)
    for child_name, child in src._modules.items():
        full = f"{prefix}{child_name}"
        if full in swapped:
            dst._modules[child_name] = swapped[full]
        elif child is not None:
            clone = copy.copy(child)
            _rebuild_with(clone, child, swapped, full + ".")
            dst._modules[child_name] = clone


def trace_to_onnx(model: nn.Module, task: ModelTask, opset: int = 18,
                  tokenizer=None) -> tuple[onnx.ModelProto, list[str], str]:
    """ONNX of `model` (no QuantLinear inside) with dynamic batch and sequence axes; inputs per `input_names_for`."""
    names = input_names_for(model, tokenizer)
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
