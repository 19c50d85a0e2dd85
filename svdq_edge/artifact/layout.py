"""Where an exported folder keeps its ONNX file. Two layouts, named by `Layout`:

    ort              model.onnx (+ model.onnx.data) at the top: ONNX Runtime, onnxruntime-genai, Optimum
    transformers.js  onnx/model_<dtype>.onnx (+ onnx/model_<dtype>.onnx_data): what transformers.js fetches

Config, tokenizer and report files sit at the top in both. Every reader of an exported folder finds the file through
`model_file`, so each command takes either layout.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from svdq_edge.errors import UserError

ONNX_FILE = "model.onnx"
ONNX_SUBFOLDER = "onnx"  # transformers.js's default `subfolder`


class Layout(str, Enum):
    ORT = "ort"
    TRANSFORMERS_JS = "transformers.js"

    def __str__(self) -> str:
        return self.value


def find_model_file(folder: str | Path) -> Path | None:
    """The folder's ONNX file in either layout; None when it holds none. The transformers.js layout is a model
    folder (config.json at the top), not any folder with a subfolder named onnx. More than one file under onnx/
    (several dtypes of one model) is an error: the caller cannot know which one is meant."""
    folder = Path(folder)
    top = folder / ONNX_FILE
    if top.is_file():
        return top
    if not (folder / "config.json").is_file():
        return None
    found = sorted((folder / ONNX_SUBFOLDER).glob("model*.onnx"))
    if len(found) > 1:
        raise UserError(f"{folder / ONNX_SUBFOLDER}: several ONNX files ({', '.join(p.name for p in found)}); "
                        "keep one per folder")
    return found[0] if found else None


def model_file(folder: str | Path) -> Path:
    """The folder's ONNX file; a one-line error when there is none."""
    path = find_model_file(folder)
    if path is None:
        raise UserError(f"{folder}: no ONNX model ({ONNX_FILE}, or {ONNX_SUBFOLDER}/model*.onnx in transformers.js's "
                        "layout)")
    return path


def model_files(folder: str | Path) -> list[Path]:
    """The ONNX file and its external data files (what a size on disk counts)."""
    path = find_model_file(folder)
    if path is None:
        return []
    return sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())
