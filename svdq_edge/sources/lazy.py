"""Read a Hugging Face folder's safetensors one tensor (or one row range) at a time.

Each read opens the shard, copies what was asked for into a float32 tensor and closes the shard again, so no
file-backed page stays mapped (pages of a mapped file count in the process's RSS). Nothing else is held: this is
what keeps quantizing a model bounded by one layer's FP32 weight, not the whole model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from svdq_edge.errors import UserError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


class LazyWeightsError(UserError, FileNotFoundError):
    """The folder has no safetensors weights, or a tensor is missing; the message is one line."""


class LazyWeights:
    """name -> shard file, from model.safetensors or model.safetensors.index.json."""

    def __init__(self, folder: str | Path, prefix: str = ""):
        """`prefix`: the model's base_model_prefix (e.g. "bert"), which checkpoints store with or without."""
        folder = Path(folder)
        self.prefix = prefix
        if (folder / INDEX).is_file():
            index = json.loads((folder / INDEX).read_text())["weight_map"]
            self.shard = {name: folder / file for name, file in index.items()}
        elif (folder / SINGLE).is_file():
            with _open(folder / SINGLE) as f:
                self.shard = dict.fromkeys(f.keys(), folder / SINGLE)
        else:
            raise LazyWeightsError(f"{folder}: no {SINGLE} or {INDEX}")
        self.folder = folder

    @classmethod
    def available(cls, folder: str | Path) -> bool:
        folder = Path(folder)
        return folder.is_dir() and ((folder / INDEX).is_file() or (folder / SINGLE).is_file())

    def __contains__(self, name: str) -> bool:
        return self._key(name) is not None

    def names(self) -> list[str]:
        return list(self.shard)

    def shape(self, name: str) -> tuple[int, ...]:
        key = self._need(name)
        with _open(self.shard[key]) as f:
            return tuple(f.get_slice(key).get_shape())

    def read(self, name: str) -> Tensor:
        """The whole tensor as float32 (a copy: the shard is closed on return)."""
        key = self._need(name)
        with _open(self.shard[key]) as f:
            return _own_float(f.get_tensor(key))

    def read_rows(self, name: str, start: int, stop: int) -> Tensor:
        """Rows [start, stop) of a 2-D tensor as float32."""
        key = self._need(name)
        with _open(self.shard[key]) as f:
            return _own_float(f.get_slice(key)[start:stop])

    def _key(self, name: str) -> str | None:
        """The stored key of the model's tensor `name`: as is, with the base-model prefix, or without it."""
        p = self.prefix + "."
        for key in (name, p + name if self.prefix else None, name[len(p):] if name.startswith(p) else None):
            if key is not None and key in self.shard:
                return key
        return None

    def _need(self, name: str) -> str:
        key = self._key(name)
        if key is None:
            raise LazyWeightsError(f"{self.folder}: no tensor {name!r} in the safetensors weights")
        return key


def _open(path: Path):
    """safe_open, with an unreadable file reported as a one-line LazyWeightsError."""
    try:
        return safe_open(str(path), framework="pt")
    except Exception as e:  # safetensors raises its own error type (and OSError) for bad or missing files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LazyWeightsError(f"{path}: not a readable safetensors file ({first})") from None


def _own_float(t: Tensor) -> Tensor:
    """float32 in memory of its own (a dtype conversion already copies; a float32 tensor is cloned)."""
    return t.float() if t.dtype != torch.float32 else t.clone()
