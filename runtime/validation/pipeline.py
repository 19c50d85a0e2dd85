"""Build every backend's ONNX folder (FP32, ORT's baselines, ours) and validate them per execution provider."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from svdq_edge.artifact.io import save_quantized
from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import TextDataset
from svdq_edge.exporters.export import SizeReport, export_onnx
from svdq_edge.pipeline.apply import calibrate_model, quantize_model
from svdq_edge.runtime.validation.baselines import build_baseline, require_baselines
from svdq_edge.runtime.validation.validate import DEFAULT_SHAPES, Backend, Validation, validate
from svdq_edge.sources.load import LoadedModel, ModelTask

log = logging.getLogger(__name__)
DEFAULT_BASELINES = ("ort-int8", "ort-rtn4", "ort-rtn4-acc4", "ort-hqq4")


def shipped_sentences() -> TextDataset:
    """The 80 sentences shipped with the package, for fidelity checks of feature extractors (no labels)."""
    text = resources.files("svdq_edge").joinpath("assets/sentences.txt").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return TextDataset("sentences", lines, None, [0] * len(lines), "svdq_edge/assets/sentences.txt")


@dataclass
class BuiltBackends:
    backends: list[Backend]
    sizes: dict[str, SizeReport]


def build_backends(loaded: LoadedModel, work: Path, configs: dict[str, QuantConfig],
                   baselines: tuple[str, ...] = DEFAULT_BASELINES, accuracy_levels: tuple[int, ...] = (0,),
                   save_quantized_dirs: bool = False, level_of: dict[str, int] | None = None,
                   target: str = "cpu", layout: str = "ort") -> BuiltBackends:
    """FP32 ONNX first, then ORT's baselines built from it, then our exports: one per labelled config and
    MatMulNBits accuracy level (level 0 keeps the label, level L adds `-accL`). A label in `level_of` is exported
    once, at that level, under its own label. `target`, `layout`: export_onnx's, for our exports ("web": no
    GatherBlockQuantized; "transformers.js": the file under onnx/ as transformers.js fetches it).

    `loaded.model` is left untouched (each config quantizes a copy).
    """
    require_baselines(baselines)
    work.mkdir(parents=True, exist_ok=True)
    # one step per folder built: the FP32 export, each baseline, each of our exports (quantizing is its own bar)
    level_of = level_of or {}
    levels = {label: (level_of[label],) if label in level_of else accuracy_levels for label in configs}
    bar = tqdm(total=1 + len(baselines) + sum(map(len, levels.values())), desc="build fp32", leave=False)
    fp32_dir, fp32_sizes, _ = export_onnx(loaded, work / "fp32", overwrite=True)
    bar.update()
    backends = [Backend("fp32", fp32_dir, "FP32 ONNX (torch.onnx dynamo export)")]
    sizes = {"fp32": fp32_sizes}
    for name in baselines:
        bar.set_description(f"build {name}")
        backends.append(Backend(name, build_baseline(name, fp32_dir, work / name), "onnxruntime.quantization"))
        bar.update()
    for label, config in configs.items():
        q = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.task, loaded.source)
        report = quantize_model(q.model, config, calibrate_model(q.model, q.tokenizer, config))
        if save_quantized_dirs:
            save_quantized(q, report, work / f"{label}-quantized", overwrite=True)
        for level in levels[label]:
            name = label if level == 0 or label in level_of else f"{label}-acc{level}"
            bar.set_description(f"export {name}")
            out, s, _ = export_onnx(q, work / name, report.config.to_dict(), accuracy_level=level, overwrite=True,
                                    target=target, layout=layout)
            bar.update()
            backends.append(Backend(name, out, f"{config.method} W{config.bits} b{config.block_size} "
                                               f"keep {config.keep:g} {config.structure.value}, "
                                               f"accuracy_level {level}"))
            sizes[name] = s
    bar.close()
    return BuiltBackends(backends, sizes)


def validate_all(built: BuiltBackends, loaded: LoadedModel, data: TextDataset, runtimes: list[str],
                 threads: int | None, shapes=DEFAULT_SHAPES, runs: int = 30, has_labels: bool = True) -> Validation:
    """Every built backend under every runtime (names of runtime/runtimes), in one interleaved timing run."""
    task = loaded.task.value if loaded.task is not ModelTask.CAUSAL_LM else "causal-lm"
    vocab = loaded.model.config.vocab_size
    return validate(built.backends, loaded.tokenizer, data, task, vocab, runtimes, threads, shapes, runs, has_labels)
