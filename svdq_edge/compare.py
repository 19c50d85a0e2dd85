"""Quantize one model with several methods under one budget and compare them on the same examples (PyTorch)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from torch import Tensor

from svdq_edge.apply import find_targets, linear_weight, quantize_model
from svdq_edge.config import QuantConfig
from svdq_edge.data import TextDataset
from svdq_edge.evaluate import Accuracy, accuracy, batches, correct_mask, kl_divergence, predict_logits, top1_agreement
from svdq_edge.fidelity import capture_inputs, output_error
from svdq_edge.io import quantized_layers
from svdq_edge.sources import LoadedModel
from svdq_edge.stats import PairedComparison, paired_compare
from svdq_edge.table import markdown_table

FIDELITY_ROWS = 128  # eval examples whose activations measure per-layer output error (a diagnostic, not a method input)


@dataclass
class MethodResult:
    label: str
    config: QuantConfig | None  # None for the FP32 reference
    logits: Tensor
    acc: Accuracy
    vs_fp32: PairedComparison | None = None
    vs_rtn: PairedComparison | None = None
    agree: float = 1.0
    kl: float = 0.0
    out_err: float = 0.0
    bits: float = 32.0
    seconds: float = 0.0


def compare_methods(loaded: LoadedModel, data: TextDataset, configs: dict[str, QuantConfig], batch_size: int = 32,
                    progress: bool = True) -> list[MethodResult]:
    """FP32 first, then one result per labelled config, all on the same examples."""
    fp32 = loaded.model
    tok = loaded.tokenizer
    ref_logits = predict_logits(fp32, tok, data, batch_size, progress=progress, desc="fp32")
    fp32_correct = correct_mask(ref_logits, data.labels)
    results = [MethodResult("fp32", None, ref_logits, accuracy(ref_logits, data.labels))]
    skip = next(iter(configs.values())).skip if configs else ()
    names = [n for n, _ in find_targets(fp32, skip)]
    X = capture_inputs(fp32, names, batches(tok, data.head(FIDELITY_ROWS), batch_size))
    rtn_correct = None
    for label, config in configs.items():
        model = copy.deepcopy(fp32)
        start = time.perf_counter()
        report = quantize_model(model, config, progress=progress)
        seconds = time.perf_counter() - start
        logits = predict_logits(model, tok, data, batch_size, progress=progress, desc=label)
        correct = correct_mask(logits, data.labels)
        errs = [output_error(linear_weight(fp32.get_submodule(n)), q.effective_weight(), X[n])
                for n, q in quantized_layers(model).items() if n in X]
        res = MethodResult(label, config, logits, accuracy(logits, data.labels),
                           vs_fp32=paired_compare(fp32_correct, correct),
                           agree=top1_agreement(ref_logits, logits), kl=kl_divergence(ref_logits, logits),
                           out_err=sum(errs) / len(errs), bits=report.mean_bits(), seconds=seconds)
        if config.method == "rtn" and rtn_correct is None:
            rtn_correct = correct
        results.append(res)
    if rtn_correct is not None:
        for r in results[1:]:
            r.vs_rtn = paired_compare(rtn_correct, correct_mask(r.logits, data.labels))
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _paired(p: PairedComparison | None) -> str:
    if p is None:
        return "-"
    return f"{100 * p.diff:+.2f} [{100 * p.ci[0]:+.2f}, {100 * p.ci[1]:+.2f}] p={p.p_value:.2f}"


def results_table(results: list[MethodResult]) -> str:
    headers = ["method", "acc % (95% CI)", "Δ vs fp32 [CI] McNemar p", "Δ vs rtn [CI] p", "agree %", "KL",
               "layer out err", "bits/w", "quant s"]
    rows = []
    for r in results:
        lo, hi = r.acc.ci
        rows.append([r.label, f"{_pct(r.acc.value)} ({_pct(lo)}-{_pct(hi)})", _paired(r.vs_fp32), _paired(r.vs_rtn),
                     _pct(r.agree), f"{r.kl:.4f}", f"{r.out_err:.4f}" if r.config else "-", f"{r.bits:.2f}",
                     f"{r.seconds:.1f}" if r.config else "-"])
    return markdown_table(headers, rows)
