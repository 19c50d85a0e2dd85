"""The Python API: what the CLI does, as functions (`import svdq_edge as sq`).

    cfg = sq.QuantConfig(bits=4, block_size=128, keep=0.01)     # frozen, validated at construction
    q = sq.quantize("path/or/hub-id", cfg)                      # a Quantized: .loaded (model, tokenizer), .report
    q.save("out/q")                                             # the quantized folder (`svdq-edge quantize`)
    sq.export(q, "out/onnx", accuracy_level=4)                  # the ONNX folder (`svdq-edge export`)
    q2 = sq.load("out/q")                                       # a quantized folder back

`model` may be a hub id, a local Hugging Face folder, a GGUF file (transcoded exactly unless a config is given),
None (the embedded MiniLM), or an in-memory `transformers` model (quantized in place).

As under the CLI, each entry point first switches off the telemetry of the runtimes it drives
(`ORT_DISABLE_TELEMETRY=1` unless the process already sets it; OpenVINO's event; see svdq_edge/util/privacy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from svdq_edge.config import QuantConfig, TranscodeConfig
from svdq_edge.util.privacy import no_telemetry

if TYPE_CHECKING:
    from torch import nn

    from svdq_edge.pipeline.report import QuantReport
    from svdq_edge.sources.load import LoadedModel


@dataclass
class Quantized:
    """A quantized model: `loaded` (the model with QuantLinear layers, its tokenizer, task and source), `report`
    (per-layer bits and errors; None for a folder loaded back) and `config`."""

    loaded: LoadedModel
    config: QuantConfig | TranscodeConfig
    report: QuantReport | None = None

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def save(self, output: str | Path, overwrite: bool = False) -> Path:
        """Write the quantized folder (atomically; `overwrite` replaces only a folder svdq-edge wrote)."""
        from svdq_edge.artifact.io import save_quantized

        if self.report is None:
            raise ValueError("a folder loaded back is already saved: copy the folder instead")
        return save_quantized(self.loaded, self.report, output, overwrite=overwrite)


def quantize(model: str | Path | nn.Module | None = None, config: QuantConfig | None = None, *,
             tokenizer=None, progress: bool = True) -> Quantized:
    """Quantize `model` with `config` (default: QuantConfig(), data-free W4). A GGUF file with no config is
    transcoded exactly; an in-memory model (with its `tokenizer`, when it has one) is quantized in place."""
    no_telemetry()
    from svdq_edge.sources.load import gguf_path

    if model is not None and not isinstance(model, str | Path):
        return _quantize_module(model, config or QuantConfig(), tokenizer, progress)
    spec = None if model is None else str(model)
    gguf = gguf_path(spec)
    if gguf is not None and config is None:
        from svdq_edge.pipeline.transcode import transcode_gguf

        loaded, report = transcode_gguf(gguf, progress=progress)
    else:
        from svdq_edge.pipeline.stream import quantize_any

        loaded, report = quantize_any(spec, config or QuantConfig(), progress)
    return Quantized(loaded, report.config, report)


def _quantize_module(model: nn.Module, config: QuantConfig, tokenizer, progress: bool) -> Quantized:
    from svdq_edge.pipeline.apply import calibrate_model, quantize_model
    from svdq_edge.sources.load import LoadedModel, detect_task

    loaded = LoadedModel(model.eval(), tokenizer, detect_task(model.config), getattr(model, "name_or_path", ""))
    report = quantize_model(model, config, calibrate_model(model, tokenizer, config, progress), progress)
    return Quantized(loaded, report.config, report)


def load(folder: str | Path) -> Quantized:
    """A quantized folder (`svdq-edge quantize`, `Quantized.save`) back in memory."""
    no_telemetry()
    from svdq_edge.artifact.io import load_quantized

    loaded, config = load_quantized(folder)
    return Quantized(loaded, config)


def export(model: Quantized | str | Path, output: str | Path, *, accuracy_level: int | str | None = None,
           graph: str = "auto", target: str = "cpu", ort_format: str | None = None, layout: str = "ort",
           overwrite: bool = False) -> Path:
    """Write the ONNX folder of a quantized model (a Quantized, or a quantized folder's path) as `svdq-edge export`
    does: MatMulNBits plus the FP32 correction; accuracy level 4 for causal LMs and 0 for encoders unless given;
    `target="web"` writes the quantized embedding in standard ops (every onnxruntime-web build); `ort_format`
    ("arm"/"amd64") adds model.ort for ONNX Runtime's mobile builds; `layout="transformers.js"` puts the file where
    transformers.js loads it (onnx/model_<dtype>.onnx, dtype in config.json). Returns the folder."""
    no_telemetry()
    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.exporters.onnx.linear import AccuracyLevels
    from svdq_edge.sources.load import ModelTask

    q = model if isinstance(model, Quantized) else load(model)
    levels = (AccuracyLevels.default_for(q.loaded.task is ModelTask.CAUSAL_LM, target) if accuracy_level is None
              else AccuracyLevels.of(accuracy_level))
    out, _, _ = export_onnx(q.loaded, output, q.config.to_dict(), accuracy_level=levels,
                            overwrite=overwrite, graph=graph, ort_target=ort_format, target=target, layout=layout)
    return out
