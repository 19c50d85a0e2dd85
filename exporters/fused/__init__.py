"""Fused graphs built from the Hugging Face config and our modules, with no trace: decoders in onnxruntime-genai's
layout (shared KV buffer), BERT encoders in Optimum's I/O. One builder per family, registered by `model_type`."""

from __future__ import annotations

from torch import nn

from svdq_edge.exporters.fused.base import DecoderBuilder, FusedDecoder, FusedUnsupported
from svdq_edge.exporters.fused.bert import BertBuilder
from svdq_edge.exporters.fused.gemma import GemmaBuilder
from svdq_edge.exporters.fused.gpt2 import GPT2Builder
from svdq_edge.exporters.fused.llama import LlamaBuilder
from svdq_edge.exporters.onnx.external import ExternalData

BUILDERS: dict[str, type[DecoderBuilder]] = {"llama": LlamaBuilder, "mistral": LlamaBuilder, "qwen2": LlamaBuilder,
                                             "gpt2": GPT2Builder, "gemma3_text": GemmaBuilder, "bert": BertBuilder}

__all__ = ["BUILDERS", "FusedDecoder", "FusedUnsupported", "build_fused", "fused_unsupported_reason"]


def fused_unsupported_reason(config) -> str | None:
    """Why this config cannot take the fused path (None when it can)."""
    kind = getattr(config, "model_type", None)
    if kind not in BUILDERS:
        return f"model type {kind!r} has no fused builder (fused: {', '.join(BUILDERS)})"
    return BUILDERS[kind].unsupported_reason(config)


def build_fused(model: nn.Module, accuracy_level: int = 0, element_form: str = "auto",
                external: ExternalData | None = None) -> FusedDecoder:
    """The fused graph of `model` (raises FusedUnsupported where `fused_unsupported_reason` gives a reason)."""
    reason = fused_unsupported_reason(model.config)
    if reason is not None:
        raise FusedUnsupported(reason)
    return BUILDERS[model.config.model_type](model, accuracy_level, element_form, external).build()
