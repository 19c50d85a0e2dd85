"""Swap the traced stand-ins of quantized layers for MatMulNBits / GatherBlockQuantized fragments.

Linears are traced as `svdq_edge::QuantLinear` placeholder nodes carrying the layer's name (see
`torch_export.TracePlaceholder`): no dense weight is ever materialised, which keeps export memory near the size of
the quantized model. Each placeholder becomes MatMulNBits + the correction fragment. Embedding tables are traced as
ordinary Gathers of their dequantized table and found by content (the SHA-1 of the float32 bytes). Every quantized
layer must be found exactly once; otherwise the export fails rather than leaving an FP32 weight in the file.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from svdq_edge.exporters.onnx.embedding import quant_embedding_fragment
from svdq_edge.exporters.onnx.linear import MS_DOMAIN, quant_linear_fragment
from svdq_edge.model.embedding import QuantEmbedding
from svdq_edge.model.modules import QuantLinear

PLACEHOLDER_DOMAIN = "svdq_edge"
PLACEHOLDER_OP = "QuantLinear"


class SpliceError(RuntimeError):
    pass


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _fingerprints(tables: dict[str, QuantEmbedding]) -> dict[tuple[tuple[int, ...], str], str]:
    """(shape, digest of the dequantized table) -> layer name."""
    out: dict[tuple[tuple[int, ...], str], str] = {}
    for name, q in tables.items():
        arr = q.table().detach().cpu().numpy()
        key = (arr.shape, _digest(arr))
        if key in out:
            raise SpliceError(f"tables {out[key]} and {name} are identical; cannot tell them apart")
        out[key] = name
    return out


def splice_quantized(model: onnx.ModelProto, quant: dict[str, QuantLinear | QuantEmbedding], element_form: str = "auto",
                     accuracy_level: int = 0) -> dict[str, str]:
    """Replace, in place, each quantized linear's placeholder and each table's Gather; returns {name: replaced op}."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    tables = {n: q for n, q in quant.items() if isinstance(q, QuantEmbedding)}
    prints = _fingerprints(tables)
    shapes = {k[0] for k in prints}
    found: dict[str, str] = {}
    new_nodes = []
    for node in graph.node:
        if node.domain == PLACEHOLDER_DOMAIN and node.op_type == PLACEHOLDER_OP:
            name = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "layer")
            name = name.decode() if isinstance(name, bytes) else name
            if name in found or not isinstance(quant.get(name), QuantLinear):
                raise SpliceError(f"placeholder for {name!r} is unknown or appears twice in the traced graph")
            frag = quant_linear_fragment(name, quant[name].mixed, node.input[0], node.output[0], element_form,
                                         accuracy_level, kernel=quant[name].kernel)
            new_nodes.extend(frag.nodes)
            graph.initializer.extend(frag.initializers)
            found[name] = "MatMul"
            continue
        name = _match_table(node, inits, prints, shapes)
        if name is None:
            new_nodes.append(node)
            continue
        frag = quant_embedding_fragment(name, tables[name].packed, node.input[1], node.output[0])
        new_nodes.extend(frag.nodes)
        if name not in found:  # a table gathered twice (e.g. tied) shares its initializers
            graph.initializer.extend(frag.initializers)
        found[name] = "Gather"
    missing = sorted(set(quant) - set(found))
    if missing:
        raise SpliceError(f"{len(missing)} quantized layers not found in the traced graph (first: {missing[0]})")
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph)
    kept = [o for o in model.opset_import if o.domain != PLACEHOLDER_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return found


def _match_table(node, inits, prints, shapes) -> str | None:
    """The quantized table a Gather(axis 0) reads, found by its initializer's content."""
    if node.op_type != "Gather" or node.input[0] not in inits:
        return None
    if next((a.i for a in node.attribute if a.name == "axis"), 0) != 0:
        return None
    init = inits[node.input[0]]
    shape = tuple(init.dims)
    if shape not in shapes or init.data_type != onnx.TensorProto.FLOAT:
        return None  # shapes are checked first: hashing is the slow part
    return prints.get((shape, _digest(numpy_helper.to_array(init))))


def _drop_unused_initializers(graph) -> None:
    """Remove initializers no node reads, in place (rebuilding the list would copy every tensor)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for i in reversed(range(len(graph.initializer))):
        if graph.initializer[i].name not in used:
            del graph.initializer[i]
