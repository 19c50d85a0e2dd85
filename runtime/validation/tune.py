"""`svdq-edge tune`: quantize a model several ways, measure every candidate under ONNX Runtime beside FP32 and INT8
dynamic, keep the Pareto frontier (size x latency x fidelity loss) and export the best point within a size limit.

Candidates are QuantConfigs plus a MatMulNBits accuracy level (`default_space`). Each finished candidate (quantized
and exported) is cached under `<out>/models/<model key>/candidates/<key>/`, keyed by the model's fingerprint and the
candidate's settings, so an interrupted tune goes on where it stopped and another model never reuses it. Fidelity
and latency are measured afterwards in one interleaved validation of everything, so the timings compare like with
like.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from svdq_edge.config import QuantConfig
from svdq_edge.errors import UserError
from svdq_edge.runtime.validation.pick import int8_config, mixed_config

METRICS = ("kl", "accuracy", "cosine")
DONE = "candidate.json"


@dataclass(frozen=True)
class Candidate:
    label: str
    config: QuantConfig
    accuracy_level: int = 4

    @property
    def key(self) -> str:
        """A folder name derived from the settings and the package version (not the label): the same settings reuse
        the same cache, a new release rebuilds it."""
        from importlib.metadata import version

        text = json.dumps({"config": self.config.to_dict(), "level": self.accuracy_level,
                           "version": version("svdq-edge")}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_space(embedding_bits: int | None = 4) -> list[Candidate]:
    """The searched settings: the int8 kernel (per-column weight scales, and per tensor where `auto` measures it
    cheap), per-layer 4/8-bit budgets on it, 4-bit block sizes and methods; all
    at accuracy level 4 (int8 activations: the fast CPU path). 3-bit codes are left out: MatMulNBits stores them in a
    4-bit container, so they are never smaller than 4 bits, only worse (measured: docs/encoders.md)."""
    base = QuantConfig(embedding_bits=embedding_bits)
    space = [Candidate("int8", int8_config(base)), Candidate("int8-auto", int8_config(base, "auto"))]
    space += [Candidate(f"mixed-{b:g}", mixed_config(base, b)) for b in (7.0, 6.0, 5.75, 5.5, 5.0)]
    space += [Candidate(f"w4-b{bs}-{m}", replace(base, block_size=bs, method=m))
              for bs in (128, 64, 32) for m in ("range", "svd")]
    return space


def loss_of(row: dict, metric: str) -> float:
    """Smaller is better: KL to FP32, 1 - mean cosine, or minus accuracy."""
    if metric == "kl":
        return row["kl"]
    if metric == "cosine":
        return 1.0 - row["cosine"]
    return -row["accuracy"]


def pareto(points: list[tuple[float, ...]]) -> list[bool]:
    """For each point (every axis: smaller is better), whether no other point is at least as good on every axis and
    strictly better on one."""
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))

    return [not any(dominates(q, p) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


def choose(rows: list[dict], max_size: float) -> dict | None:
    """The candidate with the least loss among ours within `max_size` (ratio to the FP32 file); None if none fits."""
    fits = [r for r in rows if r["ours"] and r["size_ratio"] <= max_size]
    return min(fits, key=lambda r: (r["loss"], r["size_ratio"])) if fits else None


def model_key(model) -> str:
    """A folder name for the model being tuned: its config and a fingerprint of every parameter (name, shape, first
    values, sum and sum of squares in float64), so two fine-tunes of one architecture never share a cache."""
    import torch

    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, p in model.named_parameters():
        t = p.detach()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.float().flatten()[:16].numpy().tobytes())
        h.update(torch.stack([t.double().sum(), t.double().pow(2).sum()]).numpy().tobytes())
    return h.hexdigest()[:16]


def cached(work: Path, c: Candidate) -> Path | None:
    """The candidate's exported folder when a previous tune finished it."""
    folder = work / "candidates" / c.key
    return folder / "onnx" if (folder / DONE).is_file() else None


def mark_done(work: Path, c: Candidate) -> None:
    folder = work / "candidates" / c.key
    (folder / DONE).write_text(json.dumps({"label": c.label, "config": c.config.to_dict(),
                                           "accuracy_level": c.accuracy_level}, indent=2, sort_keys=True))


def build_candidate(loaded, c: Candidate, work: Path, graph: str) -> Path:
    """Quantize a copy of the model with the candidate's config, export it into the cache and mark it done."""
    import copy

    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.pipeline.apply import quantize_model
    from svdq_edge.sources.load import LoadedModel

    q = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.task, loaded.source)
    report = quantize_model(q.model, c.config, progress=False)
    path, _, _ = export_onnx(q, work / "candidates" / c.key / "onnx", report.config.to_dict(),
                             accuracy_level=c.accuracy_level, overwrite=True, graph=graph)
    mark_done(work, c)
    return path


def tune(loaded, data, metric: str, max_size: float, work: Path, space: list[Candidate], runs: int = 30,
         threads: int = 2, shapes=((1, 128), (8, 128)), has_labels: bool = True, progress: bool = True,
         sweep=None) -> dict:
    """Build (or reuse) every candidate, validate all of them with FP32 and INT8 dynamic in one interleaved run, and
    return {"rows": [...], "chosen": row or None, "failed": {...}, ...}; rows carry size ratio, latency, loss and
    `frontier`. With a RaySweep (validation/cluster.py) the missing candidates build as one Ray task each, into `work`
    (which every node must reach); a build that fails after Ray's retry is left out and named in "failed"."""
    from tqdm.auto import tqdm

    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.exporters.fused import fused_unsupported_reason
    from svdq_edge.runtime.validation.baselines import build_baseline
    from svdq_edge.runtime.validation.validate import Backend, validate

    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    work = work / "models" / model_key(loaded.model)  # the cache of this model's builds
    work.mkdir(parents=True, exist_ok=True)
    graph = "fused" if fused_unsupported_reason(loaded.model.config) is None else "traced"
    fp32 = work / "fp32"
    if not (fp32 / "model.onnx").is_file():
        export_onnx(loaded, fp32, overwrite=True, graph=graph)
    int8 = work / "ort-int8"
    if not (int8 / "model.onnx").is_file():
        build_baseline("ort-int8", fp32, int8)
    backends = [Backend("fp32", fp32, f"FP32 ({graph} graph)"), Backend("ort-int8", int8, "ORT INT8 dynamic")]
    todo = [c for c in space if cached(work, c) is None]
    failed: dict[str, str] = {}
    if sweep is None:
        for c in tqdm(todo, desc="tune: build candidates", disable=not progress):
            build_candidate(loaded, c, work, graph)
    elif todo:
        ref = sweep.put(loaded)
        outcomes = sweep.map(build_candidate, {c.label: (ref, c, work, graph) for c in todo}, progress=progress)
        failed = {label: o.error for label, o in outcomes.items() if o.error is not None}
    for c in space:
        path = cached(work, c)
        if path is not None:
            backends.append(Backend(c.label, path, f"accuracy_level {c.accuracy_level}"))
    results = validate(backends, loaded.tokenizer, data, loaded.task.value, loaded.model.config.vocab_size,
                       ("ort-cpu",), threads, list(shapes), runs, has_labels).results
    rows = [_row(r, i == 0, results[0].size_mb, metric) for i, r in enumerate(results)]
    first = f"{shapes[0][0]}x{shapes[0][1]}"
    for row, on in zip(rows, pareto([(r["size_ratio"], r["latency_ms"][first], r["loss"]) for r in rows]),
                       strict=True):
        row["frontier"] = on
    return {"metric": metric, "max_size": max_size, "graph": graph, "latency_shape": first, "rows": rows,
            "chosen": choose(rows, max_size), "failed": failed}


def _row(r, reference: bool, fp32_mb: float, metric: str) -> dict:
    """One validated backend as a tune row; the reference (FP32) has exact fidelity to itself."""
    row = {"label": r.backend.name, "ours": r.backend.name not in ("fp32", "ort-int8"),
           "path": str(r.backend.path), "size_mb": r.size_mb, "size_ratio": r.size_mb / fp32_mb,
           "latency_ms": {f"{lat.batch}x{lat.seq}": lat.p50_ms for lat in r.latency},
           "kl": 0.0 if reference and r.kl is None else r.kl,
           "cosine": 1.0 if reference and r.cosine_mean is None else r.cosine_mean,
           "accuracy": None if r.acc is None else r.acc.value}
    if row[metric] is None:
        raise UserError(f"metric {metric!r} does not apply to this model and data")
    row["loss"] = loss_of(row, metric)
    return row
