"""Files beside the weights that other libraries read, carried from a model's folder into ours: sentence-transformers'
pipeline (modules.json, the module folders it lists such as 1_Pooling/ and 2_Normalize/, sentence_bert_config.json
with max_seq_length, config_sentence_transformers.json). Without them `SentenceTransformer(folder)` builds a default
pipeline: no Normalize step and the tokenizer's 512-token limit instead of the model's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def sentence_transformers_files(folder: str | Path | None) -> list[Path]:
    """The sentence-transformers files and module folders in `folder` (none when it is not a local folder)."""
    if folder is None or not Path(folder).is_dir():
        return []
    folder = Path(folder)
    found = [folder / f for f in ST_FILES if (folder / f).is_file()]
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            listed = [m.get("path", "") for m in json.loads(modules.read_text())]
        except (ValueError, AttributeError):  # not the list of modules sentence-transformers writes: leave it
            listed = []
        found += [folder / p for p in listed if p and (folder / p).is_dir() and Path(p).name == p]
    return found


def carry_side_files(src: str | Path | None, dst: Path) -> list[str]:
    """Copy the sentence-transformers files of `src` into `dst`; returns their names."""
    names = []
    for f in sentence_transformers_files(src):
        if f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
        else:
            shutil.copy2(f, dst / f.name)
        names.append(f.name)
    return names
