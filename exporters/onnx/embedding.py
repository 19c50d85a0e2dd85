"""ONNX for a quantized token embedding: one `com.microsoft::GatherBlockQuantized` node.

Contract as for linears: a layer name, its packed table and the names of the indices and output go in; the node and
its initializers (`<name>.weight_Q4`, `_scales`, `_zp`) come out. The data layout is the MatMulNBits one flattened
per row: uint8 [vocab, hidden * bits / 8], low bits first; scales [vocab, blocks]; zero points packed per row.
"""

from __future__ import annotations

from svdq_edge.exporters.onnx.linear import MS_DOMAIN, OnnxFragment, _np
from svdq_edge.quant.packing import PackedWeight


def quant_embedding_fragment(name: str, packed: PackedWeight, indices: str, y: str,
                             make_tensor=None) -> OnnxFragment:
    """`make_tensor` builds the initializers (see OnnxFragment)."""
    bits = packed.fmt.value  # the container: GatherBlockQuantized reads 2-, 4- or 8-bit data
    f = OnnxFragment(make_tensor=make_tensor)
    w = f"{name}.weight"
    data = _np(packed.B).reshape(packed.N, -1)
    inputs = [f.init(f"{w}_Q{bits}", data), indices, f.init(f"{w}_scales", _np(packed.scales)),
              f.init(f"{w}_zp", _np(packed.zero_points))]
    f.node("GatherBlockQuantized", inputs, [y], domain=MS_DOMAIN, gather_axis=0, quantize_axis=1,
           block_size=packed.block_size, bits=bits)
    return f
