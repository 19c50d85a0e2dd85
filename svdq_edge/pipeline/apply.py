"""Walk a Hugging Face model and replace its linears with QuantLinear."""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from svdq_edge.calib.awq_fold import fold_awq_scales
from svdq_edge.calib.calibrate import LayerStats, calibration_batches, collect_stats
from svdq_edge.calib.sensitivity import group_sensitivity
from svdq_edge.calib.synthetic_calib import random_tokens, synthetic_batches
from svdq_edge.config import ConfigError, Int8Scale, Kernel, QuantConfig, synthetic_kind
from svdq_edge.evaluation.data import DataError
from svdq_edge.model.embedding import quantize_embedding_table, quantize_input_embedding
from svdq_edge.model.head import install_head, require_head
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.pipeline.layers import check_finite, quantize_linears
from svdq_edge.pipeline.report import LayerReport, QuantReport, layer_report
from svdq_edge.quant.decompose import MixedWeight, decompose, relative_error
from svdq_edge.quant.int8_scale import choose_scales, group_absmax, tensor_ranges
from svdq_edge.quant.mixed_bits import assign_bits, packed_groups
from svdq_edge.saliency import ScoreContext, get

log = logging.getLogger(__name__)


@torch.no_grad()
def synthetic_input_scales(model: nn.Module, names: list[str], n_seqs: int = 8, seq_len: int = 128,
                           seed: int = 0) -> dict[str, LayerStats]:
    """Data-free activation-scale proxy: mean |x| per input channel of each named linear on random token ids.

    No dataset is read: the inputs are uniform random token sequences, so the statistics reflect the model's own
    LayerNorm gains, biases and upstream weights rather than any corpus.
    """
    ids = random_tokens(model, n_seqs, seq_len, seed)
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def fn(_m, inputs, _out):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.abs().sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        model.eval()
        for i in range(n_seqs):
            model(input_ids=ids[i : i + 1], attention_mask=torch.ones_like(ids[i : i + 1]))
    finally:
        for h in handles:
            h.remove()
    return {n: LayerStats(sums[n] / counts[n], None, counts[n]) for n in sums}


def calibrate_model(model: nn.Module, tokenizer, config: QuantConfig,
                    progress: bool = True) -> dict[str, LayerStats] | None:
    """Calibration statistics of every target layer when `config.method` needs them (None otherwise)."""
    if not get(config.method).needs_calibration:
        return None
    if config.calib_data is None:
        raise DataError(f"method {config.method!r} needs calibration data: give --calib-data (a GLUE train TSV, a "
                        "text file for causal LMs, or synthetic)")
    names = [n for n, _ in find_targets(model, config.skip, head_apart=config.head_bits is not None)]
    kind = synthetic_kind(config.calib_data)
    if kind is not None:
        data = synthetic_batches(model, tokenizer, kind, config.calib_samples, config.calib_seq_len, config.seed)
    else:
        data = calibration_batches(tokenizer, config.calib_data, config.calib_samples, config.calib_seq_len,
                                   config.seed)
    return collect_stats(model, names, data, len(data), progress)


def quantize_model(model: nn.Module, config: QuantConfig, stats: dict[str, LayerStats] | None = None,
                   progress: bool = True) -> QuantReport:
    """Replace every target linear of `model` with a QuantLinear (in place) and report per-layer figures.

    `stats`: per-layer calibration statistics (`calib.calibrate`), required by calibrated methods. Methods with
    a scale search first fold their scales into the model (which changes the producers' weights too).
    """
    start = time.perf_counter()
    check_tables(model, config)  # before any slow step: a table GatherBlockQuantized cannot hold fails at once
    targets = find_targets(model, config.skip, head_apart=config.head_bits is not None)
    if not targets:
        raise ConfigError("no linear layers to quantize (all skipped or none present)")
    method = get(config.method)
    if method.needs_calibration and stats is None:
        raise DataError(f"method {config.method!r} needs calibration data (--calib-data: a GLUE train TSV or a "
                         "text file)")
    assign = config.bits_budget is not None and not config.layer_bits
    if method.uses_input_scale and stats is None:
        stats = synthetic_input_scales(model, [n for n, _ in targets], seed=config.seed)
    report = QuantReport(config)
    if method.scale_search:
        for name, _ in targets:
            check_finite(name, linear_weight(model.get_submodule(name)))
        stats, report.folds = fold_awq_scales(model, stats, config, {n for n, _ in targets}, progress)
        if not report.folds:
            note = (f"{config.method}: no scale folds for model type {getattr(model.config, 'model_type', '?')!r} "
                    "(svdq_edge/calib/awq_fold.py FOLD_GROUPS); its layers keep the method's saliency without scales")
            log.warning(note)
            report.notes.append(note)
    names = [n for n, _ in targets]
    del targets  # hold no reference to the FP32 linears: each one is freed as soon as it is replaced (peak memory)
    chosen: dict[str, MixedWeight] = {}
    if assign:
        config, chosen = assign_layer_bits(model, names, config, stats, progress)
        report.config = config
    absmax: dict[str, float] = {}
    if config.kernel is Kernel.INT8 and (config.int8_scale is not Int8Scale.COLUMN or config.layer_int8_scale):
        config, absmax, scaled = resolve_int8_scales(model, names, config, stats, progress)
        chosen = {n: m for n, m in chosen.items() if n not in absmax} | scaled  # the budget's were per column
        report.config = config
    quantize_linears(model, names, config, report, lambda _, m: linear_weight(m).detach().float(),
                     lambda _, m: m.bias, lambda n: _score_context(stats, n), absmax, chosen, progress)
    shared = False
    if config.head_bits is not None:
        head_name, head = require_head(model)
        W = head.weight.detach().float()
        packed = quantize_embedding_table(W, config.head_bits, config.block_size, config.symmetric, config.clip)
        shared = install_head(model, packed, head.bias)
        report.layers.append(layer_report(head_name, W, MixedWeight(packed, None)))
    if config.embedding_bits is not None and not shared:
        E = model.get_input_embeddings().weight.detach().float()
        emb_name, q = quantize_input_embedding(model, config.embedding_bits, config.block_size, config.symmetric,
                                               config.clip)
        p = q.packed
        report.layers.append(LayerReport(emb_name, tuple(E.shape), 8.0 * p.nbytes() / E.numel(),
                                         relative_error(E, q.table()), 0.0, None))
    report.seconds = time.perf_counter() - start
    return report


def check_tables(model: nn.Module, config: QuantConfig) -> None:
    """ConfigError when the token table (embedding_bits) or the output head (head_bits) would be block-quantized
    with a block that does not divide its width (GatherBlockQuantized has no padding)."""
    if config.embedding_bits is None and config.head_bits is None:
        return
    width = model.get_input_embeddings().weight.shape[1]
    if width % config.block_size:
        which = "--embedding-bits" if config.head_bits is None else "--head-bits"
        raise ConfigError(f"{which}: the table width {width} is not a multiple of block_size {config.block_size}; "
                          f"use a block size dividing {width}, or --embedding-bits none (decoders: see models/)")


def assign_layer_bits(model: nn.Module, names: list[str], config: QuantConfig, stats: dict[str, LayerStats] | None,
                      progress: bool = True) -> tuple[QuantConfig, dict[str, MixedWeight]]:
    """`config` with `layer_bits` chosen under its `bits_budget` (quant.mixed_bits, calib.sensitivity), and
    each layer's result at its chosen width (so nothing is quantized twice at the same width)."""
    results: dict[str, dict[int, MixedWeight]] = {}
    cost: dict[str, dict[int, float]] = {}
    n_weights = 0
    # The budget is costed at per-column int8 scales (one scale per tensor stores no less in our format); the
    # scales are chosen after the widths (resolve_int8_scales), which quantizes again where they change.
    base = config.replace(int8_scale=Int8Scale.COLUMN, layer_int8_scale=()) if config.kernel is Kernel.INT8 else config
    for name in tqdm(names, desc=f"quantize W{config.bits} and W8", disable=not progress):
        W = linear_weight(model.get_submodule(name)).detach().float()
        check_finite(name, W)
        ctx = _score_context(stats, name)
        n_weights += W.numel()
        results[name] = {b: decompose(W, base.replace(layer_bits={name: b}).for_layer(name), ctx)
                         for b in (config.bits, 8)}
        cost[name] = {b: m.bits_per_weight() * W.numel() for b, m in results[name].items()}
    low = {n: r[config.bits] for n, r in results.items()}
    groups = packed_groups(names)
    sensitivity = group_sensitivity(model, groups, low, random_tokens(model, 4, 128, config.seed), progress)
    assignment = assign_bits(cost, sensitivity, n_weights, config.bits_budget, config.bits)
    return config.replace(layer_bits=assignment), {n: results[n][b] for n, b in assignment.items()}


def resolve_int8_scales(model: nn.Module, names: list[str], config: QuantConfig,
                        stats: dict[str, LayerStats] | None,
                        progress: bool = True) -> tuple[QuantConfig, dict[str, float], dict[str, MixedWeight]]:
    """(config with `layer_int8_scale` resolved, {layer: absmax} of the per-tensor layers (shared by packed siblings),
    {layer: its result} where already quantized). `auto` quantizes each int8 group both ways and chooses by
    end-to-end sensitivity (svdq_edge/quant/int8_scale.py); `tensor`/`column` or a saved choice only resolve ranges."""
    def weight(name: str) -> Tensor:
        return linear_weight(model.get_submodule(name))

    if config.int8_scale is not Int8Scale.AUTO or config.layer_int8_scale:
        return config, tensor_ranges(config, names, weight), {}
    layers = {n: config.for_layer(n) for n in names}
    int8 = [n for n in names if layers[n].kernel is Kernel.INT8]
    groups = packed_groups(int8)
    absmax = group_absmax(groups, weight)
    results: dict[Int8Scale, dict[str, MixedWeight]] = {Int8Scale.COLUMN: {}, Int8Scale.TENSOR: {}}
    for name in tqdm(int8, desc="int8 scales: column and tensor", disable=not progress):
        W = weight(name).detach().float()
        for scale, mixed in results.items():
            layer = layers[name].replace(int8_scale=scale)
            mixed[name] = decompose(W, layer, _score_context(stats, name),
                                    absmax[name] if scale is Int8Scale.TENSOR else None)
    ids = random_tokens(model, 4, 128, config.seed)
    sensitivity = {s: group_sensitivity(model, groups, r, ids, progress) for s, r in results.items()}
    chosen = choose_scales(sensitivity[Int8Scale.COLUMN], sensitivity[Int8Scale.TENSOR])
    config = config.replace(layer_int8_scale={n: s.value for n, s in chosen.items()})
    tensor = {n for n, s in chosen.items() if s is Int8Scale.TENSOR}
    return config, {n: absmax[n] for n in tensor}, {n: results[s][n] for n, s in chosen.items()}


def _score_context(stats: dict[str, LayerStats] | None, name: str) -> ScoreContext:
    """What a saliency method may read for layer `name`: its input scales and X^T X, when statistics exist."""
    st = None if stats is None else stats.get(name)
    return ScoreContext(input_scale=None if st is None else st.mean_abs, hessian=None if st is None else st.H)


