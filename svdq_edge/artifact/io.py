"""Save and reload a quantized model folder, without the original FP32 weights of quantized layers.

Folder layout:
  model.safetensors   packed codes, scales, zero points, corrections, and every unquantized parameter
  quant_config.json   {"format": 1, "config": QuantConfig, "task", "source", "layers": {name: layer meta}, "report"}
  config.json         the Hugging Face model config
  tokenizer files     as the source model had them
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from svdq_edge.artifact.outputs import staged_output
from svdq_edge.artifact.side_files import carry_side_files
from svdq_edge.config import QuantConfig, TranscodeConfig, config_from_dict
from svdq_edge.errors import UserError
from svdq_edge.model.embedding import QuantEmbedding
from svdq_edge.model.modules import QuantLinear, set_module
from svdq_edge.pipeline.report import QuantReport
from svdq_edge.sources.load import LoadedModel, ModelTask, load_tokenizer, portable_source, save_config

QUANT_CONFIG_FILE = "quant_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def is_quantized_dir(path: str | Path) -> bool:
    return (Path(path) / QUANT_CONFIG_FILE).is_file()


def save_quantized(loaded: LoadedModel, report: QuantReport, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the folder atomically: everything goes to a sibling temp folder, renamed into place at the end."""
    out = Path(out_dir)
    with staged_output(out, overwrite) as tmp:
        model = loaded.model
        layers = {n: m.layer_meta() for n, m in model.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))}
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        quantized = {f"{n}.{b}" for n in layers for b, _ in model.get_submodule(n).named_buffers()}
        save_file(_dedupe_shared(state, quantized), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        report_dict = report.to_dict()
        if isinstance(report.config, TranscodeConfig):  # the GGUF file, as portable as the source
            report_dict["config"]["file"] = portable_source(report.config.file, out)
        meta = {"format": FORMAT_VERSION, "config": report_dict["config"], "task": loaded.task.value,
                "source": portable_source(loaded.source, out), "layers": layers, "report": report_dict}
        (tmp / QUANT_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        save_config(model, tmp)
        if loaded.tokenizer is not None:
            loaded.tokenizer.save_pretrained(tmp)
        carry_side_files(loaded.folder, tmp)
    return out


def _dedupe_shared(state: dict[str, torch.Tensor], own_copy: set[str]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory. Tied FP32 parameters keep the first name of each storage (the
    loader ties them again); quantized layers' buffers in `own_copy` (a head sharing its table with the embedding)
    are saved under every name, cloned, since each layer rebuilds from its own."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen:
            if k in own_copy:
                out[k] = v.clone()
            continue
        seen[key] = k
        out[k] = v
    return out


def read_quant_meta(path: str | Path) -> dict:
    meta = json.loads((Path(path) / QUANT_CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise UserError(f"{path}: unsupported quantized-folder format {meta.get('format')!r}")
    return meta


def load_quantized(path: str | Path) -> tuple[LoadedModel, QuantConfig | TranscodeConfig]:
    """Rebuild the model on the meta device (no FP32 allocation), put QuantLinear layers in place, and fill the
    remaining tensors from the saved ones."""
    from svdq_edge.pipeline.stream import StreamError, materialize, skeleton
    from svdq_edge.sources.load import load_config

    path = Path(path)
    meta = read_quant_meta(path)
    task = ModelTask(meta["task"])
    model = skeleton(load_config(str(path)), task)
    state = load_file(str(path / WEIGHTS_FILE))
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise UserError(f"{path}: {WEIGHTS_FILE} tensor {bad} holds NaN or infinity")
    used = set()
    for name, lm in meta["layers"].items():
        prefix = name + "."
        tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        used |= {prefix + k for k in tensors}
        set_module(model, name, _checked_layer(path, name, lm, tensors))
    try:
        materialize(model, state.__getitem__, state.__contains__)
    except StreamError as e:
        raise UserError(f"{path}: weights do not match the model ({e})") from None
    used |= {n for n, _ in [*model.named_parameters(), *model.named_buffers()]}
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise UserError(f"{path}: weights do not match the model (unexpected {unexpected[:3]})")
    model.eval()
    config = config_from_dict(meta["config"])
    source = meta["source"]  # relative to this folder when it was a local one (portable_source)
    if not source.startswith("embedded:") and (Path(path) / source).exists():
        source = str((Path(path) / source).resolve())
    return LoadedModel(model, load_tokenizer(str(path)), task, source, str(path)), config


def _checked_layer(path: Path, name: str, meta: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The quantized layer `name` rebuilt from its saved tensors, after checking they can be that layer (shapes,
    dtypes, correction indices in range): a damaged folder is a one-line error naming the layer, never a model that
    exports or runs with garbage."""
    cls = QuantEmbedding if meta.get("kind") == "embedding" else QuantLinear
    try:
        layer = cls.from_tensors(meta, tensors)
    except KeyError as e:
        raise UserError(f"{path}: layer {name}: {e.args[0]!r} missing from {WEIGHTS_FILE} or "
                        f"{QUANT_CONFIG_FILE}") from None
    why = (layer.packed if isinstance(layer, QuantEmbedding) else layer.mixed).problem()
    if why is not None:
        raise UserError(f"{path}: layer {name}: {why}")
    return layer


def quantized_layers(model: nn.Module) -> dict[str, QuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}
