"""What `compare --ray` distributes: the PyTorch method grid (one Ray task per labelled config) and the ONNX
validation (one Ray task per device kind, every backend timed interleaved on one node of that kind)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import TextDataset
from svdq_edge.pipeline.apply import calibrate_model
from svdq_edge.pipeline.compare import MethodResult, calibration_key, evaluate_config, paired_results, reference
from svdq_edge.runtime.validation.cluster import DEVICE_LABEL, ClusterError, RaySweep
from svdq_edge.runtime.validation.validate import Backend, Validation, validate
from svdq_edge.sources.load import LoadedModel


@dataclass
class SweepResults:
    results: list[MethodResult]  # FP32 first, then every config that finished, paired as compare_methods pairs them
    failed: dict[str, str] = field(default_factory=dict)  # label -> why, after Ray's retry
    placed: dict[str, dict] = field(default_factory=dict)  # label -> {"node": id, "device": label}


def _evaluate(ref, label: str, config: QuantConfig, calib: dict | None) -> MethodResult:
    return evaluate_config(ref, label, config, calib, progress=False)


def _calibrate(ref, config: QuantConfig) -> dict:
    return calibrate_model(ref.loaded.model, ref.loaded.tokenizer, config, progress=False)


def sweep_methods(sweep: RaySweep, loaded: LoadedModel, data: TextDataset, configs: dict[str, QuantConfig],
                  batch_size: int = 32, task=_evaluate) -> SweepResults:
    """compare_methods with every config as one Ray task: the FP32 reference is computed here once and shared
    through the object store; calibration statistics are one task per distinct calibration (file, rows, seed),
    whose result the candidates of that calibration take as an argument. `task(ref, label, config, calib)` is the
    unit of work (tests swap in one that kills its worker)."""
    ref = reference(loaded, data, configs, batch_size, progress=False)
    ref_id = sweep.put(ref)
    calib = {}
    for c in configs.values():
        key = calibration_key(c)
        if key is not None and key not in calib:
            calib[key] = sweep.submit(_calibrate, ref_id, c)
    outcomes = sweep.map(task, {label: (ref_id, label, c, calib.get(calibration_key(c)))
                                for label, c in configs.items()})
    return SweepResults(paired_results(ref, [o.value for o in outcomes.values() if o.error is None]),
                        {k: o.error for k, o in outcomes.items() if o.error is not None},
                        {k: {"node": o.node, "device": o.device} for k, o in outcomes.items() if o.error is None})


def _pack(backends: list[Backend]) -> dict[str, dict[str, bytes]]:
    """Every backend folder as {name: {file: bytes}}: artifacts that travel through the object store."""
    return {b.name: {p.name: p.read_bytes() for p in sorted(Path(b.path).iterdir()) if p.is_file()}
            for b in backends}


def _validate_on_node(backends: list[Backend], packed: dict | None, tokenizer, data: TextDataset, task: str,
                      vocab: int, runtimes: list[str], threads: int, shapes, runs: int,
                      has_labels: bool) -> Validation:
    """One device's validation: unpack the folders (or read them from the shared --artifacts folder) and run
    `validate` there; the results name the driver's folders."""
    work = None
    try:
        local = backends
        if packed is not None:
            work = Path(tempfile.mkdtemp(prefix="svdq-edge-artifacts-"))
            for name, files in packed.items():
                (work / name).mkdir()
                for file, data_bytes in files.items():
                    (work / name / file).write_bytes(data_bytes)
            local = [replace(b, path=work / b.name) for b in backends]
        v = validate(local, tokenizer, data, task, vocab, runtimes, threads, shapes, runs, has_labels)
        by_name = {b.name: b for b in backends}
        for r in v.results:
            r.backend = by_name[r.backend.name]
        return v
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def validate_per_device(sweep: RaySweep, backends: list[Backend], loaded: LoadedModel, data: TextDataset,
                        runtimes: list[str], threads: int, shapes, runs: int, has_labels: bool,
                        shared_artifacts: bool) -> tuple[dict[str, Validation], dict[str, str]]:
    """The same validation on one node of every device kind in the cluster (`shared_artifacts`: the folders sit
    where every node reads them; else they travel through the object store). Returns ({device: validation},
    {device: why it failed})."""
    task = loaded.task.value
    packed = None if shared_artifacts else sweep.put(_pack(backends))
    args = (backends, packed, loaded.tokenizer, data, task, loaded.model.config.vocab_size, runtimes, threads,
            list(shapes), runs, has_labels)
    kinds = sweep.devices()
    if not kinds:
        raise ClusterError(f"--per-device: no alive Ray node has a {DEVICE_LABEL} label (ray start --labels "
                           f"{DEVICE_LABEL}=KIND)")
    out, failed = {}, {}
    for kind in kinds:
        # one device at a time: on a test cluster every "device" shares this machine's cores
        cpus = max(1, min(threads, sweep.cpus_of(kind)))
        o = sweep.map(_validate_on_node, {kind: args}, device=kind, cpus=cpus)[kind]
        if o.error is None:
            out[kind] = o.value
        else:
            failed[kind] = o.error
    return out, failed
