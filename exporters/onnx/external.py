"""Initializers written to the external-data file as they are made, so an export never holds the model's tensors.

ONNX keeps a tensor's bytes either inside the protobuf (raw_data) or in a side file it names (data_location
EXTERNAL, with location / offset / length). `ExternalData.tensor` writes an array's bytes straight to the side file
and returns a TensorProto holding only that reference: building a graph then never copies a tensor, and ONNX
Runtime maps page-aligned tensors straight from the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

INLINE_BYTES = 1024  # smaller tensors (shapes, axes, scalars) stay inside the protobuf
PAGE = 4096  # large tensors start on a page boundary (mmap-able by ONNX Runtime)
SMALL_ALIGN = 64


class ExternalData:
    """One side file; use as a context manager (closes the file)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.location = self.path.name  # relative to model.onnx, which sits in the same folder
        self.file = open(self.path, "wb")  # noqa: SIM115 (closed by close() / the context manager)
        self.offset = 0

    def tensor(self, name: str, array: np.ndarray) -> TensorProto:
        """A TensorProto for `array` whose bytes go straight from the array to the file (no in-memory copy);
        small arrays stay inline."""
        array = np.require(array, requirements="C")  # keeps 0-d arrays 0-d (ascontiguousarray makes them [1])
        if array.nbytes < INLINE_BYTES:
            return numpy_helper.from_array(array, name)
        t = TensorProto(name=name, dims=array.shape, data_type=helper.np_dtype_to_tensor_dtype(array.dtype))
        self._point(t, self._write(memoryview(array).cast("B")))
        return t

    def _write(self, data: memoryview) -> tuple[int, int]:
        align = PAGE if data.nbytes >= 1 << 20 else SMALL_ALIGN
        pad = -self.offset % align
        self.file.write(b"\0" * pad)
        start = self.offset + pad
        self.file.write(data)
        self.offset = start + data.nbytes
        return start, data.nbytes

    def _point(self, t: TensorProto, span: tuple[int, int]) -> None:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", self.location), ("offset", str(span[0])), ("length", str(span[1]))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ExternalData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
