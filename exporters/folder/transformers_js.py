"""transformers.js's folder layout, made from an exported folder in place.

transformers.js (v3, v4) loads `<folder>/onnx/model<suffix>.onnx`, the suffix named by a dtype (q4 -> `_q4`,
q8 -> `_quantized`, fp32 -> none), and fetches external data only when config.json says so, under the name
`model<suffix>.onnx_data`:

    config.json           "transformers.js_config": {"dtype": "q4", "use_external_data_format": {"model_q4.onnx": 1}}
    onnx/model_q4.onnx    the graph; its external tensors point at model_q4.onnx_data (same folder)
    tokenizer_config.json "chat_template": transformers.js reads the template only there (transformers 5 writes it
                          to chat_template.jinja, which stays)

With the dtype in config.json, `pipeline(task, folder)` needs no options. genai_config.json (fused decoders) names
the moved file, so onnxruntime-genai runs the same folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto

from svdq_edge.artifact.layout import ONNX_FILE, ONNX_SUBFOLDER
from svdq_edge.exporters.folder.genai import GENAI_CONFIG

CONFIG_KEY = "transformers.js_config"
SUFFIX = {"fp32": "", "q8": "_quantized", "q4": "_q4", "q2": "_q2"}  # transformers.js's DEFAULT_DTYPE_SUFFIX_MAPPING
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def dtype_of(layers: dict) -> str:
    """transformers.js's dtype name for an export's layer table (export.json "layers"): the narrowest linear width
    decides (mixed 4/8-bit is q4); no quantized layer is fp32."""
    bits = [int(v["bits"]) for v in layers.values() if v.get("kind", "linear") == "linear"]
    bits = bits or [int(v["bits"]) for v in layers.values()]
    if not bits:
        return "fp32"
    low = min(bits)
    return "q2" if low <= 2 else "q4" if low <= 4 else "q8"


def to_transformers_js(folder: Path, dtype: str) -> Path:
    """Move `folder`/model.onnx (+ model.onnx.data) to onnx/model<suffix>.onnx (+ _data) and write the config and
    tokenizer fields transformers.js reads. Returns the new ONNX path. `folder` is a staged export (not yet
    published), so a failure leaves no half-made output."""
    if dtype not in SUFFIX:
        raise ValueError(f"dtype must be one of {sorted(SUFFIX)}, got {dtype!r}")
    src = folder / ONNX_FILE
    name = f"model{SUFFIX[dtype]}.onnx"
    target = folder / ONNX_SUBFOLDER / name
    target.parent.mkdir()
    model = onnx.load(str(src), load_external_data=False)
    data_name = name + "_data"
    external = _point_external_data(model, data_name)
    if external:
        (folder / (ONNX_FILE + ".data")).rename(target.parent / data_name)
    onnx.save_model(model, str(target))  # tensors stay where they are: only their references changed
    src.unlink()
    _update_json(folder / "config.json", {CONFIG_KEY: {"dtype": dtype} | (
        {"use_external_data_format": {name: 1}} if external else {})})
    template = folder / CHAT_TEMPLATE_FILE
    if template.is_file() and (folder / "tokenizer_config.json").is_file():
        _update_json(folder / "tokenizer_config.json", {"chat_template": template.read_text()}, keep=True)
    genai = folder / GENAI_CONFIG
    if genai.is_file():
        cfg = json.loads(genai.read_text())
        cfg["model"]["decoder"]["filename"] = f"{ONNX_SUBFOLDER}/{name}"
        genai.write_text(json.dumps(cfg, indent=4))
    return target


def _point_external_data(model: onnx.ModelProto, location: str) -> bool:
    """Re-point every external tensor of `model` at `location` (offsets kept); True when there was one. All our
    exports write one external file, so every reference names the same file."""
    found = False
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
                found = True
    return found


def _update_json(path: Path, fields: dict, keep: bool = False) -> None:
    """Set `fields` in the JSON object at `path` (keep=True: leave a field the file already has)."""
    data = json.loads(path.read_text())
    for k, v in fields.items():
        if not (keep and data.get(k)):
            data[k] = v
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
