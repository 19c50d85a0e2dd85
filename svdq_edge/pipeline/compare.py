"""Quantize one model with several methods under one budget and compare them on the same examples (PyTorch)."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from svdq_edge.artifact.io import quantized_layers
from svdq_edge.calib.awq_fold import folded_reference
from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import DataError, TextDataset
from svdq_edge.evaluation.evaluate import (
    Accuracy,
    accuracy,
    batches,
    correct_mask,
    kl_divergence,
    predict_logits,
    top1_agreement,
)
from svdq_edge.evaluation.fidelity import capture_inputs, output_error
from svdq_edge.evaluation.stats import PairedComparison, paired_compare
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.pipeline.apply import calibrate_model, quantize_model
from svdq_edge.saliency import get
from svdq_edge.sources.load import LoadedModel
from svdq_edge.util.table import markdown_table

FIDELITY_ROWS = 128  # eval examples whose activations measure per-layer output error (a diagnostic, not a method input)


@dataclass(frozen=True)
class OrtCheck:
    """The same quantized model exported to ONNX and run under ONNX Runtime (CPU) on the same examples."""

    logits: Tensor
    acc: Accuracy
    agree_with_torch: float  # share of examples with the same predicted label as the PyTorch model
    max_abs_diff: float  # max |logit(ORT) - logit(PyTorch)|


# (label, quantized model, config, PyTorch logits) -> OrtCheck; built by the caller (the runtime package).
OrtChecker = Callable[[str, nn.Module, QuantConfig, Tensor], OrtCheck]


@dataclass
class MethodResult:
    label: str
    config: QuantConfig | None  # None for the FP32 reference
    logits: Tensor
    acc: Accuracy
    vs_fp32: PairedComparison | None = None
    vs_rtn: PairedComparison | None = None
    vs_svd: PairedComparison | None = None
    agree: float = 1.0
    kl: float = 0.0
    out_err: float = 0.0
    bits: float = 32.0
    seconds: float = 0.0
    ort: OrtCheck | None = None

    @property
    def method(self) -> str:
        return "fp32" if self.config is None else self.config.method


@dataclass
class Reference:
    """What every candidate is compared with: the FP32 model, its logits, and the inputs of its linear layers on the
    first FIDELITY_ROWS examples (for the per-layer output error; captured on first use, deterministically, so a
    reference sent to another process travels without them: ~340 MB for MiniLM)."""

    loaded: LoadedModel
    data: TextDataset
    logits: Tensor
    skip: tuple[str, ...]
    batch_size: int = 32
    X: dict[str, Tensor] | None = None

    def inputs(self) -> dict[str, Tensor]:
        if self.X is None:
            names = [n for n, _ in find_targets(self.loaded.model, self.skip)]
            self.X = capture_inputs(self.loaded.model, names,
                                    batches(self.loaded.tokenizer, self.data.head(FIDELITY_ROWS), self.batch_size))
        return self.X


def reference(loaded: LoadedModel, data: TextDataset, configs: dict[str, QuantConfig], batch_size: int = 32,
              progress: bool = True) -> Reference:
    """The FP32 side of a comparison (refuses calibration data that is the evaluation data)."""
    if data.path and any(c.calib_data and Path(c.calib_data).resolve() == Path(data.path).resolve()
                         for c in configs.values()):
        raise DataError(f"{data.path}: calibration and evaluation data must differ (calibrate on the train split)")
    logits = predict_logits(loaded.model, loaded.tokenizer, data, batch_size, progress=progress, desc="fp32")
    skip = next(iter(configs.values())).skip if configs else ()
    return Reference(loaded, data, logits, tuple(skip), batch_size)


def calibration_key(config: QuantConfig) -> tuple | None:
    """Configs with the same key share calibration statistics (None: the method needs none)."""
    if not get(config.method).needs_calibration:
        return None
    return config.calib_data, config.calib_samples, config.calib_seq_len, config.seed, config.skip


def evaluate_config(ref: Reference, label: str, config: QuantConfig, calib: dict | None = None,
                    progress: bool = True, ort_check: OrtChecker | None = None) -> MethodResult:
    """Quantize a copy of the FP32 model with `config` (calibrated methods: from `calib`, collected here when None)
    and score it against the reference. The unit of work of a sweep: local, or one Ray task (validation.cluster)."""
    fp32, tok, data = ref.loaded.model, ref.loaded.tokenizer, ref.data
    if get(config.method).needs_calibration and calib is None:
        calib = calibrate_model(fp32, tok, config, progress=progress)
    model = copy.deepcopy(fp32)
    start = time.perf_counter()
    report = quantize_model(model, config, calib, progress=progress)
    seconds = time.perf_counter() - start
    logits = predict_logits(model, tok, data, ref.batch_size, progress=progress, desc=label)
    quant = quantized_layers(model)
    W_ref, X_ref = folded_reference({n: linear_weight(fp32.get_submodule(n)).detach().float() for n in quant},
                                    ref.inputs(), report.folds)
    errs = [output_error(W_ref[n], q.effective_weight(), X_ref[n]) for n, q in quant.items() if n in X_ref]
    fp32_correct, correct = correct_mask(ref.logits, data.labels), correct_mask(logits, data.labels)
    return MethodResult(label, config, logits, accuracy(logits, data.labels),
                        vs_fp32=paired_compare(fp32_correct, correct),
                        agree=top1_agreement(ref.logits, logits), kl=kl_divergence(ref.logits, logits),
                        out_err=sum(errs) / len(errs), bits=report.mean_bits(), seconds=seconds,
                        ort=None if ort_check is None else ort_check(label, model, report.config, logits))


def paired_results(ref: Reference, results: list[MethodResult]) -> list[MethodResult]:
    """FP32 first, then `results`, each paired against the first `rtn` and the first `svd` result when present."""
    data = ref.data
    out = [MethodResult("fp32", None, ref.logits, accuracy(ref.logits, data.labels)), *results]
    for ref_method in ("rtn", "svd"):
        anchor = next((r for r in out[1:] if r.method == ref_method), None)
        if anchor is None:
            continue
        anchor_correct = correct_mask(anchor.logits, data.labels)
        for r in out[1:]:
            setattr(r, f"vs_{ref_method}", paired_compare(anchor_correct, correct_mask(r.logits, data.labels)))
    return out


def compare_methods(loaded: LoadedModel, data: TextDataset, configs: dict[str, QuantConfig], batch_size: int = 32,
                    progress: bool = True, ort_check: OrtChecker | None = None) -> list[MethodResult]:
    """FP32 first, then one result per labelled config, all on the same examples, in this process.

    Calibration statistics are collected once per distinct (file, samples, length, seed) from the FP32 model.
    Each result is paired against the first `rtn` and the first `svd` config (when present).
    """
    ref = reference(loaded, data, configs, batch_size, progress)
    calib_cache: dict[tuple, dict] = {}
    results = []
    for label, config in configs.items():
        key = calibration_key(config)
        if key is not None and key not in calib_cache:
            calib_cache[key] = calibrate_model(loaded.model, loaded.tokenizer, config, progress=progress)
        results.append(evaluate_config(ref, label, config, calib_cache.get(key), progress, ort_check))
    return paired_results(ref, results)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _paired(p: PairedComparison | None) -> str:
    if p is None:
        return "-"
    return f"{100 * p.diff:+.2f} [{100 * p.ci[0]:+.2f}, {100 * p.ci[1]:+.2f}] p={p.p_value:.2f}"


def results_table(results: list[MethodResult]) -> str:
    headers = ["method", "acc % (95% CI)", "Δ vs fp32 [CI] McNemar p", "Δ vs rtn [CI] p", "Δ vs svd [CI] p", "KL",
               "layer out err", "bits/w", "quant s"]
    with_ort = any(r.ort is not None for r in results)
    if with_ort:
        headers += ["ORT acc %", "ORT=PT labels %", "ORT-PT max|Δ|"]
    rows = []
    for r in results:
        lo, hi = r.acc.ci
        row = [r.label, f"{_pct(r.acc.value)} ({_pct(lo)}-{_pct(hi)})", _paired(r.vs_fp32), _paired(r.vs_rtn),
               _paired(r.vs_svd), f"{r.kl:.4f}", f"{r.out_err:.4f}" if r.config else "-", f"{r.bits:.2f}",
               f"{r.seconds:.1f}" if r.config else "-"]
        if with_ort:
            o = r.ort
            row += ["-", "-", "-"] if o is None else [_pct(o.acc.value), _pct(o.agree_with_torch),
                                                      f"{o.max_abs_diff:.1e}"]
        rows.append(row)
    return markdown_table(headers, rows)


def seed_summary_table(results: list[MethodResult]) -> str:
    """One row per method over its calibration seeds: mean accuracy (min-max), mean paired differences with the
    seeds' McNemar p-values, mean KL. Methods run once (data-free) have one seed."""
    by_method: dict[str, list[MethodResult]] = {}
    for r in results[1:]:
        by_method.setdefault(r.method, []).append(r)
    headers = ["method", "seeds", "acc % mean (min-max)", "Δ vs rtn mean (p per seed)", "Δ vs svd mean (p per seed)",
               "KL mean", "ORT acc % mean"]
    rows = []
    for method, rs in by_method.items():
        accs = [r.acc.value for r in rs]
        row = [method, str(len(rs)), f"{_pct(statistics.mean(accs))} ({_pct(min(accs))}-{_pct(max(accs))})"]
        for attr in ("vs_rtn", "vs_svd"):
            ps = [getattr(r, attr) for r in rs]
            row.append("-" if any(p is None for p in ps) else
                       f"{100 * statistics.mean(p.diff for p in ps):+.2f} (" +
                       ", ".join(f"{p.p_value:.2f}" for p in ps) + ")")
        row.append(f"{statistics.mean(r.kl for r in rs):.4f}")
        orts = [r.ort.acc.value for r in rs if r.ort is not None]
        row.append(_pct(statistics.mean(orts)) if orts else "-")
        rows.append(row)
    return markdown_table(headers, rows)
