"""Validate ONNX backends side by side on one execution provider: accuracy, fidelity, size, latency, memory.

The first backend is the reference (FP32 ONNX); every other backend is compared with it on the same inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from svdq_edge.artifact.layout import model_file
from svdq_edge.errors import UserError, first_line
from svdq_edge.evaluation.data import TextDataset
from svdq_edge.evaluation.evaluate import Accuracy
from svdq_edge.evaluation.stats import PairedComparison, paired_compare
from svdq_edge.exporters.onnx.names import Role, role_of
from svdq_edge.runtime.measure.evaluate import onnx_outputs
from svdq_edge.runtime.measure.latency import LatencyResult, PeakRssGrowth, measure_interleaved, model_size_mb
from svdq_edge.runtime.measure.metrics import cosine_similarity, kl_divergence, top1_agreement

DEFAULT_SHAPES = ((1, 128), (8, 128))


@dataclass(frozen=True)
class Backend:
    name: str
    path: Path  # an exported folder (either layout: svdq_edge.artifact.layout)
    note: str = ""


@dataclass
class BackendResult:
    backend: Backend
    runtime: str  # a name of runtime/runtimes (ort-cpu, ort-cuda, openvino, ...)
    outputs: np.ndarray  # logits [n, C] or pooled embeddings [n, H]
    size_mb: float
    bits: float  # storage bits per weight of the linear layers
    latency: list[LatencyResult] = field(default_factory=list)
    rss_mb: float | None = None  # peak RSS growth while the session loads and runs the evaluation
    acc: Accuracy | None = None
    vs_fp32: PairedComparison | None = None
    agree: float | None = None
    kl: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    task: str = "sequence-classification"
    runtime_note: str = ""  # how the runtime loaded it, when it has a choice (OpenVINO's route and precision)

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.backend.name}"

    def to_dict(self, root: Path | None = None) -> dict:
        """JSON-ready; the backend's folder relative to `root` (the report's folder) when given, so a report stays
        true after its folder is moved."""
        d = {k: getattr(self, k) for k in ("runtime", "runtime_note", "size_mb", "bits", "rss_mb", "agree", "kl",
                                           "cosine_mean", "cosine_min")}
        path = self.backend.path if root is None else os.path.relpath(self.backend.path, root)
        d["backend"] = {"name": self.backend.name, "path": str(path), "note": self.backend.note}
        d["latency"] = [lat.to_dict() for lat in self.latency]
        if self.acc is not None:
            d["accuracy"] = {"correct": self.acc.correct, "n": self.acc.n, "value": self.acc.value,
                             "ci95": list(self.acc.ci)}
        if self.vs_fp32 is not None:
            p = self.vs_fp32
            d["vs_fp32"] = {"diff": p.diff, "ci95": list(p.ci), "mcnemar_p": p.p_value, "b_only": p.b_only,
                            "a_only": p.a_only}
        return d


def linear_bits_per_weight(model_dir: Path) -> float:
    """Storage bits per weight of the matmul weights in an ONNX file (MatMulNBits + our corrections, INT8 dynamic
    MatMulInteger weights, or FP32 MatMul initializers)."""
    m = onnx.load(str(model_file(model_dir)), load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}

    def nbytes(name: str) -> int:
        t = inits.get(name)
        if t is None:
            return 0
        return int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize

    bits, weights = 0, 0
    for node in m.graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            weights += attrs["K"] * attrs["N"]
            bits += 8 * sum(nbytes(i) for i in node.input[1:])
        elif node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMul", "Gemm") and \
                len(node.input) > 1 and node.input[1] in inits and role_of(node.input[1]) is not Role.CORRECTION:
            t = inits[node.input[1]]
            if len(t.dims) != 2:
                continue
            weights += int(np.prod(t.dims))
            bits += 8 * sum(nbytes(i) for i in node.input[1:] if i in inits and i != node.input[0])
    corr = sum(8 * nbytes(n) for n in inits if role_of(n) is Role.CORRECTION)
    return (bits + corr) / weights if weights else 32.0


@dataclass
class Validation:
    results: list[BackendResult]  # runtime-major: every backend under the first runtime, then the next runtime
    skipped: dict[str, str] = field(default_factory=dict)  # "runtime/backend" -> why it did not run


def validate(backends: Sequence[Backend], tokenizer, data: TextDataset, task: str, vocab: int,
             runtimes: Sequence[str] = ("ort-cpu",), threads: int | None = 2,
             shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES, runs: int = 30, has_labels: bool = True) -> Validation:
    """Evaluate every backend under every runtime; the first backend under the first runtime (FP32 ONNX on ONNX
    Runtime) is the reference of every row's fidelity and speed-up.

    Outputs and memory are measured one session at a time; latency afterwards, interleaved across all sessions of
    all runtimes (see `measure_interleaved`), so the speed-ups compare like with like. A backend that a runtime
    cannot load (OpenVINO and an op it lacks) is skipped with the reason; the reference must load.
    """
    from svdq_edge.runtime.runtimes import runtimes as known_runtimes

    known = known_runtimes()
    results: list[BackendResult] = []
    sessions = []
    skipped: dict[str, str] = {}
    for name in runtimes:
        runtime = known[name]
        for b in backends:
            with PeakRssGrowth() as rss:
                try:
                    sess = runtime.open(b.path, threads)
                except UserError as e:
                    if not results:  # the reference itself: nothing to compare with
                        raise
                    skipped[f"{name}/{b.name}"] = first_line(e)
                    continue
                out = onnx_outputs(sess, tokenizer, data, pool=task == "feature-extraction",
                                   desc=f"{name}/{b.name}")
            # a runtime in its own process (ort-node) measures its own memory; this process's growth would not
            rss_mb = sess.rss_growth_mb() if hasattr(sess, "rss_growth_mb") else rss.mb
            results.append(BackendResult(b, name, out, model_size_mb(b.path), linear_bits_per_weight(b.path),
                                         rss_mb=rss_mb, task=task, runtime_note=getattr(sess, "note", "")))
            sessions.append(sess)
    for bs, seq in shapes:
        for r, lat in zip(results, measure_interleaved(sessions, bs, seq, vocab, runs=runs, progress=True),
                          strict=True):
            r.latency.append(lat)
    del sessions
    _fidelity(results, data, task, has_labels)
    return Validation(results, skipped)


def _fidelity(results: list[BackendResult], data: TextDataset, task: str, has_labels: bool) -> None:
    ref = results[0]
    if task == "feature-extraction":
        for r in results[1:]:
            cos = cosine_similarity(ref.outputs, r.outputs)
            r.cosine_mean, r.cosine_min = float(cos.mean()), float(cos.min())
        return
    labels = np.asarray(data.labels)
    ref_correct = (ref.outputs.argmax(-1) == labels).tolist()
    for i, r in enumerate(results):
        if has_labels:
            correct = (r.outputs.argmax(-1) == labels).tolist()
            r.acc = Accuracy(sum(correct), len(correct))
            r.vs_fp32 = None if i == 0 else paired_compare(ref_correct, correct)
        if i:
            r.agree, r.kl = top1_agreement(ref.outputs, r.outputs), kl_divergence(ref.outputs, r.outputs)
