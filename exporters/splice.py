"""Swap the traced dense linears of an ONNX graph for MatMulNBits + correction fragments.

The tracer folds each linear's weight into an initializer with a generated name (often pre-transposed), so layers
are found by content: the SHA-1 of the float32 bytes of W_eff^T ([K, N], as MatMul and Gemm(transB=0) use it) or of
W_eff ([N, K], Gemm(transB=1)). Every quantized layer must be found exactly once; otherwise the export fails rather
than silently leaving an FP32 weight in the file.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from svdq_edge.embedding import QuantEmbedding
from svdq_edge.exporters.embedding import quant_embedding_fragment
from svdq_edge.exporters.linear import MS_DOMAIN, quant_linear_fragment
from svdq_edge.modules import QuantLinear


class SpliceError(RuntimeError):
    pass


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _fingerprints(quant: dict[str, QuantLinear | QuantEmbedding]) -> dict[tuple[tuple[int, int], str],
                                                                          tuple[str, bool]]:
    """(shape, digest) -> (layer name, weight is transposed [K, N]); embeddings only untransposed."""
    out: dict[tuple[tuple[int, int], str], tuple[str, bool]] = {}
    for name, q in quant.items():
        if isinstance(q, QuantEmbedding):
            forms = ((q.table().detach().cpu().numpy(), False),)
        else:
            W = q.effective_weight().detach().cpu().numpy()
            forms = ((W.T, True), (W, False))
        for arr, transposed in forms:
            key = (arr.shape, _digest(arr))
            if key in out and out[key][0] != name:
                raise SpliceError(f"layers {out[key][0]} and {name} have identical weights; cannot tell them apart")
            out[key] = (name, transposed)
    return out


def splice_quantized(model: onnx.ModelProto, quant: dict[str, QuantLinear | QuantEmbedding], element_form: str = "auto",
                     accuracy_level: int = 0) -> dict[str, str]:
    """Replace, in place, each quantized layer's MatMul/Gemm (embedding's Gather); returns {name: replaced op}."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    prints = _fingerprints(quant)
    shapes = {k[0] for k in prints}
    found: dict[str, str] = {}
    new_nodes = []
    for node in graph.node:
        match = _match(node, inits, prints, shapes)
        if match is None:
            new_nodes.append(node)
            continue
        name = match[0]
        if isinstance(quant[name], QuantEmbedding):
            frag = quant_embedding_fragment(name, quant[name].packed, node.input[1], node.output[0])
            new_nodes.extend(frag.nodes)
            if name not in found:  # a table gathered twice (e.g. tied) shares its initializers
                graph.initializer.extend(frag.initializers)
            found[name] = node.op_type
            continue
        if name in found:
            raise SpliceError(f"layer {name} appears twice in the traced graph")
        if node.op_type == "Gemm" and not _plain_gemm(node):
            raise SpliceError(f"layer {name}: Gemm with alpha/beta/transA is not supported")
        x, y = node.input[0], node.output[0]
        has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
        frag_out = f"{name}.weight_nobias_out" if has_bias else y
        frag = quant_linear_fragment(name, quant[name].mixed, x, frag_out, element_form, accuracy_level)
        new_nodes.extend(frag.nodes)
        graph.initializer.extend(frag.initializers)
        if has_bias:
            new_nodes.append(helper.make_node("Add", [frag_out, node.input[2]], [y], name=f"{name}.bias_Add"))
        found[name] = node.op_type
    missing = sorted(set(quant) - set(found))
    if missing:
        raise SpliceError(f"{len(missing)} quantized layers not found in the traced graph (first: {missing[0]})")
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return found


def _lookup(init, prints, shapes):
    """The fingerprint hit of an FP32 initializer, or None (shapes are checked first: hashing is the slow part)."""
    shape = tuple(init.dims)
    if shape not in shapes or init.data_type != onnx.TensorProto.FLOAT:
        return None
    return prints.get((shape, _digest(numpy_helper.to_array(init))))


def _match(node, inits, prints, shapes):
    if node.op_type == "Gather":
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if axis != 0 or node.input[0] not in inits:
            return None
        hit = _lookup(inits[node.input[0]], prints, shapes)
        return hit if hit is not None and not hit[1] else None
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
        return None
    hit = _lookup(inits[node.input[1]], prints, shapes)
    if hit is None:
        return None
    name, transposed = hit
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    # MatMul and Gemm(transB=0) take [K, N]; Gemm(transB=1) takes [N, K].
    if transposed != (node.op_type == "MatMul" or trans_b == 0):
        return None
    return hit


def _plain_gemm(node) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and attrs.get("transA", 0) == 0


def _drop_unused_initializers(graph) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
