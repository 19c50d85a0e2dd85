"""Checks shared by the export tests."""

from __future__ import annotations

import collections
from pathlib import Path

import onnx
from onnx import numpy_helper


def op_counts(path: Path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def full_shape_fp32_tensors(path: Path, shapes: list[tuple[int, int]],
                            allowed: tuple[str, ...] = ("pooler", "classifier", "lm_head", "embed", "wte", "wpe"),
                            ) -> list[str]:
    """Names of FP32 initializers or constants shaped like any quantized weight ([N, K] or [K, N]).

    Tensors named after modules that legitimately stay FP32 (`allowed` substrings: task heads, embeddings) are not
    counted; a tensor with a generated name (the tracer's `val_12`) or a constant is.
    """
    model = onnx.load(str(path))
    bad = set()
    targets = set(shapes) | {(k, n) for n, k in shapes}
    tensors = list(model.graph.initializer)
    tensors += [a.t for node in model.graph.node if node.op_type == "Constant" for a in node.attribute if a.t.dims]
    for t in tensors:
        if t.data_type == onnx.TensorProto.FLOAT and tuple(t.dims) in targets and not any(a in t.name for a in allowed):
            bad.add(t.name or "<constant>")
    return sorted(bad)


def initializer_names(path: Path) -> set[str]:
    return {i.name for i in onnx.load(str(path)).graph.initializer}


def to_array(path: Path, name: str):
    return next(numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if i.name == name)


def check_linear_counts(path: Path, layers: dict, n_quantized: int) -> None:
    """One MatMulNBits per emitted linear; the emitted linears (the fused decoder packs q/k/v and gate/up) cover
    every quantized module exactly once."""
    linears = [v for v in layers.values() if v["kind"] == "linear"]
    assert op_counts(path)["MatMulNBits"] == len(linears)
    assert sum(v.get("modules", 1) for v in linears) == n_quantized
