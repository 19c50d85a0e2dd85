"""A GGUF file opened for exact reading: validated up front, tensors read one at a time as raw rows.

Validation happens before anything is built, so a bad file costs no time and leaves no output: the magic, the
header and tensor table (the gguf package's GGUFReader), every tensor's bytes lying inside the file, and every
tensor's type being one this package unpacks. Each failure is a one-line GGUFError naming the file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from svdq_edge.errors import first_line
from svdq_edge.ggml import GGMLCodes, GGMLFormatError, GGMLType, read_float, unpack
from svdq_edge.gguf.convert import GGUFError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of the file: its name, GGML type, shape as [rows, K] (GGUF lists dimensions innermost first), and
    where its bytes lie in the file."""

    name: str
    kind: GGMLType
    shape: tuple[int, ...]
    offset: int
    n_bytes: int


class GGUFFile:
    """The tensors and scalar metadata of one GGUF file. Tensors are read one at a time (`raw`, `codes`, `floats`)
    through a memory map. The parsed header is not kept: the gguf reader holds every tokenizer string as a numpy
    array (~160 MB for a 49k vocabulary), and transformers parses the file again for the config and tokenizer."""

    def __init__(self, path: str | Path, known_types: bool = True):
        """`known_types=False`: read the header and check every tensor lies inside the file, but accept GGML types
        this package cannot transcode (other readers, transformers' among them, may dequantize them)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"{path}: no such GGUF file")
        with open(self.path, "rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise GGUFError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
        try:
            from gguf import GGUFReader
        except ImportError:
            raise GGUFError("reading GGUF needs the 'gguf' package: pip install 'svdq-edge[decoders]'") from None
        try:
            reader = GGUFReader(self.path)
        except Exception as e:  # the reader raises ValueError, IndexError, struct errors on a cut or corrupt file
            raise GGUFError(f"{path}: truncated or corrupt GGUF file ({first_line(e)})") from None
        self.fields = {k: v for k, f in reader.fields.items() if (v := _scalar(f)) is not None}
        size = self.path.stat().st_size
        self.tensors: dict[str, GGUFTensor] = {}
        for t in reader.tensors:
            if int(t.data_offset) + int(t.n_bytes) > size:
                raise GGUFError(f"{path}: truncated GGUF file (tensor {t.name} ends past the end of the file)")
            try:
                kind = GGMLType.of(int(t.tensor_type), t.name)
            except GGMLFormatError as e:
                if known_types:
                    raise GGUFError(f"{path}: {e}") from None
                continue
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            self.tensors[t.name] = GGUFTensor(t.name, kind, shape, int(t.data_offset), int(t.n_bytes))
        del reader

    # -- metadata -----------------------------------------------------------------------------------------------
    def field(self, key: str, default=None):
        """A scalar or string metadata value."""
        return self.fields.get(key, default)

    @property
    def architecture(self) -> str:
        arch = self.field("general.architecture")
        if arch is None:
            raise GGUFError(f"{self.path}: no general.architecture in the GGUF metadata")
        return arch

    def file_type(self) -> str:
        from gguf import LlamaFileType

        ft = self.field("general.file_type")
        try:
            return LlamaFileType(ft).name
        except ValueError:
            return str(ft)

    def type_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(t.kind.name for t in self.tensors.values()).items()))

    # -- tensors ------------------------------------------------------------------------------------------------
    def raw(self, name: str) -> Tensor:
        """uint8 [rows, row bytes] (copied out of the memory map)."""
        t = self.tensors[name]
        rows = int(np.prod(t.shape[:-1])) if len(t.shape) > 1 else 1
        data = np.memmap(self.path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.n_bytes,))
        return torch.from_numpy(np.array(data).reshape(rows, -1))

    def codes(self, name: str) -> GGMLCodes:
        return unpack(self.raw(name), self.tensors[name].kind)

    def floats(self, name: str) -> Tensor:
        """float32 tensor of its GGUF shape (block formats dequantized; float formats widened)."""
        t = self.tensors[name]
        raw = self.raw(name)
        W = read_float(raw, t.kind) if t.kind.is_float else unpack(raw, t.kind).dequantize()
        return W.reshape(t.shape)


def _scalar(f):
    """A field's value when it is one scalar or string (arrays, such as the vocabulary, are skipped)."""
    if len(f.types) != 1 or len(f.data) != 1:
        return None
    value = f.parts[f.data[0]]
    return bytes(value).decode("utf-8") if f.types[0].name == "STRING" else value.tolist()[0]

