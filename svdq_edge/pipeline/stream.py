"""Quantize a model without ever holding its FP32 weights: a meta-device skeleton, filled one layer at a time.

For data-free methods (no calibration, no forward pass), each linear is read from the safetensors shards
(sources/lazy.py), decomposed and replaced by its QuantLinear before the next is read; quantized tables are read
in row chunks (rows are quantized independently, so chunking is exact). What stays FP32 (norms, biases, unquantized
heads and tables) is read last. Peak memory is the quantized model plus one layer's FP32 weight, not the FP32 model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from svdq_edge.config import ConfigError, Int8Scale, QuantConfig
from svdq_edge.errors import UserError
from svdq_edge.model.embedding import install_input_embedding, quantize_embedding_table
from svdq_edge.model.head import install_head, require_head
from svdq_edge.model.modules import module_name
from svdq_edge.model.targets import find_targets
from svdq_edge.pipeline.apply import check_tables
from svdq_edge.pipeline.layers import quantize_linears
from svdq_edge.pipeline.report import LayerReport, QuantReport
from svdq_edge.quant.blockwise import dequantize_blockwise
from svdq_edge.quant.int8_scale import tensor_ranges
from svdq_edge.quant.packing import PackedWeight, unpack
from svdq_edge.saliency import get
from svdq_edge.sources.lazy import LazyWeights
from svdq_edge.sources.load import LoadedModel, auto_class, detect_task, load_config, load_tokenizer

log = logging.getLogger(__name__)
TABLE_ROWS = 1024  # rows of a token table read at once (6 MB at hidden 1536; quantizing takes ~10x that)


class StreamError(UserError, RuntimeError):
    """The model cannot be built lazily (a tensor neither stored nor rebuildable); use the in-memory path."""


def stream_unsupported_reason(source: str, config: QuantConfig) -> str | None:
    """Why `source` under `config` needs the in-memory path (None when it can be quantized lazily)."""
    method = get(config.method)
    if method.needs_calibration or method.uses_input_scale or method.scale_search:
        return f"method {config.method!r} runs the model forward"
    if config.bits_budget is not None and not config.layer_bits:
        return "a bits budget runs the model forward (sensitivity of every layer)"
    if config.int8_scale is Int8Scale.AUTO and not config.layer_int8_scale:
        return "int8_scale auto runs the model forward (sensitivity of every int8 group)"
    if not LazyWeights.available(source):
        return f"{source} is not a local folder with safetensors weights"
    return None


@contextlib.contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device (no memory, no init) and keep their buffers
    real: buffers are small and often computed rather than stored (rotary inv_freq, position ids, causal masks)."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def skeleton(hf_config, task) -> nn.Module:
    """The model class for `task` built from `hf_config` with its parameters on the meta device."""
    with parameters_on_meta():
        model = auto_class(task).from_config(hf_config, dtype=torch.float32, trust_remote_code=False)
    return model.eval()


def meta_model(source: str) -> tuple[nn.Module, object]:
    hf_config = load_config(source)
    task = detect_task(hf_config)
    return skeleton(hf_config, task), task


def quantize_lazily(source: str, config: QuantConfig, progress: bool = True) -> tuple[LoadedModel, QuantReport]:
    """Quantize `source` (a local folder) under a data-free `config`, one layer at a time."""
    reason = stream_unsupported_reason(source, config)
    if reason is not None:
        raise StreamError(reason)
    start = time.perf_counter()
    tokenizer = load_tokenizer(source)  # first: its parsing transient then sits on the smallest footprint
    model, task = meta_model(source)
    check_tables(model, config)  # shapes only: the meta model has them before any weight is read
    weights = LazyWeights(source, getattr(model, "base_model_prefix", ""))
    report = QuantReport(config)
    targets = [n for n, _ in find_targets(model, config.skip, head_apart=config.head_bits is not None)]
    if not targets:
        raise ConfigError("no linear layers to quantize (all skipped or none present)")
    absmax = tensor_ranges(config, targets, lambda n: weights.read(f"{n}.weight"))  # shared by packed siblings
    def weight_of(name: str, module: nn.Module) -> Tensor:
        W = weights.read(f"{name}.weight")
        return W.T.contiguous() if isinstance(module, Conv1D) else W  # Conv1D stores [in, out]

    quantize_linears(model, targets, config, report, weight_of,
                     lambda n, m: weights.read(f"{n}.bias") if m.bias is not None else None,
                     absmax=absmax, progress=progress)
    shared = _quantize_head(model, weights, config, report)
    if config.embedding_bits is not None and not shared:
        emb = model.get_input_embeddings()
        name = module_name(model, emb)
        packed, err = quantize_table_lazily(weights, f"{name}.weight", config.embedding_bits, config)
        install_input_embedding(model, packed)
        report.layers.append(_table_report(name, packed, err))
    materialize(model, weights.read, weights.__contains__)
    report.seconds = time.perf_counter() - start
    return LoadedModel(model, tokenizer, task, source, source if Path(source).is_dir() else None), report


def quantize_table_lazily(weights: LazyWeights, name: str, bits: int,
                          config: QuantConfig) -> tuple[PackedWeight, float]:
    """A [rows, hidden] table block-quantized row chunk by row chunk (bit-identical to quantizing it whole), and
    its relative error ||E - E_hat||_F / ||E||_F accumulated over the chunks."""
    rows = weights.shape(name)[0]
    parts, err2, norm2 = [], 0.0, 0.0
    for a in range(0, rows, TABLE_ROWS):
        E = weights.read_rows(name, a, min(a + TABLE_ROWS, rows))
        p = quantize_embedding_table(E, bits, config.block_size, config.symmetric, config.clip)
        err2 += float(((dequantize_blockwise(unpack(p))[:, : p.K] - E) ** 2).sum())
        norm2 += float((E**2).sum())
        parts.append(p)
    p0 = parts[0]
    packed = PackedWeight(torch.cat([p.B for p in parts]), torch.cat([p.scales for p in parts]),
                          torch.cat([p.zero_points for p in parts]), p0.K, rows, p0.bits, p0.block_size)
    return packed, (err2 / max(norm2, 1e-30)) ** 0.5


def _quantize_head(model: nn.Module, weights: LazyWeights, config: QuantConfig, report: QuantReport) -> bool:
    """head_bits: the head as a plain MatMulNBits; a tied embedding gets equal codes. Returns whether it is shared."""
    if config.head_bits is None:
        return False
    name, head = require_head(model)
    emb_name = module_name(model, model.get_input_embeddings())
    key = f"{name}.weight" if f"{name}.weight" in weights else f"{emb_name}.weight"  # tied: stored once
    packed, err = quantize_table_lazily(weights, key, config.head_bits, config)
    bias = weights.read(f"{name}.bias") if head.bias is not None else None
    report.layers.append(_table_report(name, packed, err))
    return install_head(model, packed, bias)


def materialize(model: nn.Module, read, has) -> None:
    """Fill every parameter still on the meta device from the checkpoint (`read(name)` where `has(name)`), or by
    tying an FP32 head to its embedding; stored buffers replace the computed ones."""
    buffers = dict(model.named_buffers())
    for name, t in [*model.named_parameters(), *buffers.items()]:
        if (t.is_meta or name in buffers) and has(name):
            _set_tensor(model, name, read(name))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, nn.Linear) and head.weight.is_meta:
        emb = model.get_input_embeddings()
        if not getattr(model.config, "tie_word_embeddings", False) or emb.weight.is_meta:
            raise StreamError("the output head has no stored weight and is not tied to the embedding")
        # a quantized embedding's table is dequantized on read: the head keeps its own copy, as in apply.py
        W = emb.weight
        head.weight = W if isinstance(W, nn.Parameter) else nn.Parameter(W.clone(), requires_grad=False)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise StreamError(f"{len(left)} tensors are neither stored nor rebuildable (first: {left[0]})")


def _set_tensor(model: nn.Module, name: str, value: Tensor) -> None:
    owner, _, attr = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    if attr in module._parameters:
        module._parameters[attr] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[attr] = value


def _table_report(name: str, p: PackedWeight, err: float) -> LayerReport:
    return LayerReport(name, (p.N, p.K), 8.0 * p.nbytes() / (p.N * p.K), err, 0.0, None)



def quantize_any(spec: str | None, config: QuantConfig, progress: bool = True) -> tuple[LoadedModel, QuantReport]:
    """Quantize the model `spec` names: lazily, layer by layer, where the method and the source allow it, else in
    memory (calibrated methods, hub ids, checkpoints that do not map onto the model's tensors)."""
    from svdq_edge.pipeline.apply import calibrate_model, quantize_model
    from svdq_edge.sources.lazy import LazyWeightsError
    from svdq_edge.sources.load import load_model, resolve_source

    source = resolve_source(spec)
    reason = stream_unsupported_reason(source, config)
    if reason is None:
        try:
            return quantize_lazily(source, config, progress)
        except (StreamError, LazyWeightsError) as e:
            reason = str(e)
    log.info("quantizing in memory: %s", reason)
    loaded = load_model(source)
    stats = calibrate_model(loaded.model, loaded.tokenizer, config, progress)
    return loaded, quantize_model(loaded.model, config, stats, progress)
