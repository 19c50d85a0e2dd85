"""Trace a causal LM with its KV cache as explicit graph inputs and outputs (the layout Optimum and onnxruntime-genai
use for decoder-only models).

Graph contract (one graph serves prefill and decode; a prompt is fed with zero-length past tensors):
  inputs   input_ids int64 [batch, sequence]
           attention_mask int64 [batch, past_sequence + sequence]
           position_ids int64 [batch, sequence]
           past_key_values.{i}.key / .value float32 [batch, kv_heads, past_sequence, head_dim], i < num_layers
  outputs  logits float32 [batch, sequence, vocab]
           present.{i}.key / .value float32 [batch, kv_heads, past_sequence + sequence, head_dim]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import onnx
import torch
from torch import nn
from transformers import DynamicCache

TRACE_BATCH, TRACE_SEQ, TRACE_PAST = 2, 3, 5  # all > 1 so the exporter keeps every axis dynamic


@dataclass(frozen=True)
class KVLayout:
    """Shape of the cache: num_layers pairs of [batch, kv_heads, past, head_dim] float32 tensors."""

    num_layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config) -> KVLayout:
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(config.num_hidden_layers, kv, head_dim)

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]


class DecoderWithPast(nn.Module):
    """Flat tensors in and out around a Hugging Face causal LM and its DynamicCache."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.layout = KVLayout.of(model.config)

    def forward(self, input_ids, attention_mask, position_ids, past: list[torch.Tensor]):
        cache = DynamicCache(config=self.model.config)
        for i in range(self.layout.num_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def trace_decoder_with_past(model: nn.Module, opset: int = 18) -> tuple[onnx.ModelProto, list[str], list[str]]:
    """ONNX of a causal LM (no QuantLinear inside) with KV-cache inputs/outputs and dynamic batch/length axes."""
    wrapper = DecoderWithPast(model).eval()
    layout = wrapper.layout
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (TRACE_BATCH, TRACE_SEQ), generator=g)
    mask = torch.ones(TRACE_BATCH, TRACE_PAST + TRACE_SEQ, dtype=torch.long)
    pos = torch.arange(TRACE_PAST, TRACE_PAST + TRACE_SEQ).expand(TRACE_BATCH, -1)
    past = [torch.randn(TRACE_BATCH, layout.kv_heads, TRACE_PAST, layout.head_dim, generator=g)
            for _ in range(2 * layout.num_layers)]
    inputs = ["input_ids", "attention_mask", "position_ids", *layout.past_names()]
    outputs = ["logits", *layout.present_names()]
    # Optimum's and the fused graph's dim names: transformers.js sizes an empty past by the name "batch_size"
    dims = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "past": [{0: "batch_size", 2: "past_sequence_length"} for _ in past]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper, (ids, mask, pos, past), dynamo=True, opset_version=opset,
                                    input_names=inputs, output_names=outputs, dynamic_shapes=dims, verbose=False)
    return program.model_proto, inputs, outputs
