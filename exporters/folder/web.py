"""The web target: a graph every onnxruntime-web build runs. The WebGPU/JSEP bundle of onnxruntime-web (the build
transformers.js loads in browsers) has no kernel for `com.microsoft::GatherBlockQuantized`, so each quantized token
lookup is rewritten in standard ONNX ops on the same initializers (no file grows but by a few nodes):

    rows   = Gather(data, ids)                      uint8 [B, S, D*b/8]     (b = bits, per = 8/b codes per byte)
    codes  = BitwiseAnd(BitShift(rows, b*j), 2^b-1) for j < per, interleaved -> [B, S, n_blocks, block]
    zp     = the same unpacking of Gather(zero_points, ids), cut to n_blocks (default 2^(b-1) when absent)
    y      = (Cast(codes) - Cast(zp)) * Gather(scales, ids)     float [B, S, D]

which is GatherBlockQuantized's own arithmetic, so the output is bit-identical. Indices are [batch, sequence]
(every encoder and decoder we export); gather_axis 0 and quantize_axis 1 (the only layout we write).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from svdq_edge.errors import UserError
from svdq_edge.exporters.onnx.compat import MS_DOMAIN

MIN_OPSET = 18  # BitwiseAnd


def portable_embeddings(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every GatherBlockQuantized of `model` in standard ops; returns how many."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    nodes, count = [], 0
    for node in graph.node:
        if node.domain == MS_DOMAIN and node.op_type == "GatherBlockQuantized":
            if opset < MIN_OPSET:
                raise UserError(f"the web target needs ONNX opset >= {MIN_OPSET} (BitwiseAnd); this graph is "
                                f"opset {opset}")
            new_nodes, inits = _standard_lookup(node)
            nodes += new_nodes
            graph.initializer.extend(inits)
            count += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if count and not any(n.domain == MS_DOMAIN for n in graph.node):
        kept = [o for o in model.opset_import if o.domain != MS_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return count


def _standard_lookup(node: onnx.NodeProto) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("gather_axis", 0) != 0 or attrs.get("quantize_axis", 1) != 1:
        raise UserError(f"{node.name}: the web target rewrites GatherBlockQuantized with gather_axis 0 and "
                        "quantize_axis 1 only")
    bits, block = int(attrs.get("bits", 4)), int(attrs["block_size"])
    data, ids, scales = node.input[:3]
    zero_points = node.input[3] if len(node.input) > 3 and node.input[3] else None
    p = f"{node.name or node.output[0]}/web"
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, f"{p}/{name}"))
        return f"{p}/{name}"

    def op(op_type: str, inputs: list[str], name: str, **kw) -> str:
        nodes.append(helper.make_node(op_type, inputs, [f"{p}/{name}"], name=f"{p}/{name}", **kw))
        return f"{p}/{name}"

    rows2d = const("rows_shape", np.array([0, 0, -1], dtype=np.int64))  # [B, S, anything]
    last = const("last_axis", np.array([-1], dtype=np.int64))
    mask = const("mask", np.array(2**bits - 1, dtype=np.uint8))

    def unpacked(packed: str, tag: str) -> str:
        """uint8 [B, S, X] packed codes -> uint8 [B, S, X * 8/bits], the lowest bits first."""
        x = op("Reshape", [packed, rows2d], f"{tag}_rows")
        per = 8 // bits
        if per == 1:
            return x
        parts = []
        for j in range(per):
            shifted = x if j == 0 else op("BitShift", [x, const(f"{tag}_shift{j}", np.array(bits * j, np.uint8))],
                                          f"{tag}_shifted{j}", direction="RIGHT")
            parts.append(op("Unsqueeze", [op("BitwiseAnd", [shifted, mask], f"{tag}_code{j}"), last],
                            f"{tag}_code{j}_4d"))
        both = op("Concat", parts, f"{tag}_interleaved", axis=-1)  # [B, S, X, per]: byte order, lowest bits first
        return op("Reshape", [both, rows2d], f"{tag}_codes")

    codes = unpacked(op("Gather", [data, ids], "data_gathered", axis=0), "data")
    codes = op("Reshape", [codes, const("blocks_shape", np.array([0, 0, -1, block], dtype=np.int64))], "blocks")
    blocks_per_row = op("Reshape", [op("Gather", [scales, ids], "scale_rows", axis=0), rows2d], "scales")
    scale = op("Unsqueeze", [blocks_per_row, last], "scale")
    if zero_points is None:  # GatherBlockQuantized's default zero point
        zp = const("default_zero_point", np.array(2 ** (bits - 1), dtype=np.float32))
    else:
        zp_codes = unpacked(op("Gather", [zero_points, ids], "zp_gathered", axis=0), "zp")
        n_blocks = op("Shape", [blocks_per_row], "n_blocks", start=2, end=3)
        zp_codes = op("Slice", [zp_codes, const("zero", np.array([0], dtype=np.int64)), n_blocks, last], "zp_cut")
        zp = op("Unsqueeze", [op("Cast", [zp_codes], "zp_float", to=TensorProto.FLOAT), last], "zero_point")
    centred = op("Sub", [op("Cast", [codes], "codes_float", to=TensorProto.FLOAT), zp], "centred")
    values = op("Mul", [centred, scale], "values")
    nodes.append(helper.make_node("Reshape", [values, rows2d], [node.output[0]], name=f"{p}/out"))
    return nodes, inits
