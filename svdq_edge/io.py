"""Save and reload a quantized model folder, without the original FP32 weights of quantized layers.

Folder layout:
  model.safetensors   packed codes, scales, zero points, corrections, and every unquantized parameter
  quant_config.json   {"format": 1, "config": QuantConfig, "task", "source", "layers": {name: layer meta}, "report"}
  config.json         the Hugging Face model config
  tokenizer files     as the source model had them
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from svdq_edge.apply import QuantReport
from svdq_edge.config import QuantConfig
from svdq_edge.embedding import QuantEmbedding
from svdq_edge.modules import QuantLinear, set_module
from svdq_edge.sources import AUTO_CLASS, LoadedModel, ModelTask, load_tokenizer

QUANT_CONFIG_FILE = "quant_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class OutputExistsError(FileExistsError):
    pass


def is_quantized_dir(path: str | Path) -> bool:
    return (Path(path) / QUANT_CONFIG_FILE).is_file()


def prepare_output(out_dir: str | Path, overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: output folder exists (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def commit_output(tmp: Path, out: Path) -> None:
    """Move a fully written temporary folder into place (replacing `out`)."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def save_quantized(loaded: LoadedModel, report: QuantReport, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the folder atomically: everything goes to a sibling temp folder, renamed into place at the end."""
    out = prepare_output(out_dir, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model = loaded.model
        layers = {n: m.layer_meta() for n, m in model.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))}
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(_dedupe_shared(state), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = {"format": FORMAT_VERSION, "config": report.config.to_dict(), "task": loaded.task.value,
                "source": loaded.source, "layers": layers, "report": report.to_dict()}
        (tmp / QUANT_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        model.config.save_pretrained(tmp)
        if loaded.tokenizer is not None:
            loaded.tokenizer.save_pretrained(tmp)
        commit_output(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings): keep the first name of each storage."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out


def read_quant_meta(path: str | Path) -> dict:
    meta = json.loads((Path(path) / QUANT_CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported quantized-folder format {meta.get('format')!r}")
    return meta


def load_quantized(path: str | Path) -> tuple[LoadedModel, QuantConfig]:
    """Rebuild the model from its config, put QuantLinear layers in place, and load the saved tensors."""
    from svdq_edge.sources import load_config

    path = Path(path)
    meta = read_quant_meta(path)
    task = ModelTask(meta["task"])
    model = AUTO_CLASS[task].from_config(load_config(str(path)))
    state = load_file(str(path / WEIGHTS_FILE))
    for name, lm in meta["layers"].items():
        prefix = name + "."
        tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        cls = QuantEmbedding if lm.get("kind") == "embedding" else QuantLinear
        set_module(model, name, cls.from_tensors(lm, tensors))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if hasattr(model, "tie_weights") and not any(isinstance(m, QuantEmbedding) for m in model.modules()):
        model.tie_weights()  # a quantized table's tied head was saved with its own (dequantized) weight
    model.eval()
    config = QuantConfig.from_dict(meta["config"])
    return LoadedModel(model, load_tokenizer(str(path)), task, meta["source"]), config


def quantized_layers(model: nn.Module) -> dict[str, QuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}
