import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from svdq_edge.errors import UserError
from svdq_edge.exporters.onnx.embedding import quant_embedding_fragment
from svdq_edge.exporters.onnx.linear import MS_DOMAIN
from svdq_edge.model.embedding import QuantEmbedding, quantize_embedding_table, quantize_input_embedding
from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.packing import unpack
from svdq_edge.runtime.runtimes.session import make_session


def numpy_reference(packed, ids):
    """Hand-written dequantize-then-gather from the packed bytes (independent of our unpack)."""
    bits, bs = packed.bits, packed.block_size
    per = 8 // bits
    data = packed.B.numpy().reshape(packed.N, -1)
    codes = np.stack([(data >> (bits * i)) & (2**bits - 1) for i in range(per)], -1).reshape(packed.N, -1)
    zp_bytes = packed.zero_points.numpy()
    zero = np.stack([(zp_bytes >> (bits * i)) & (2**bits - 1) for i in range(per)], -1).reshape(packed.N, -1)
    nb = packed.scales.shape[1]
    E = (codes.astype(np.int32) - np.repeat(zero[:, :nb], bs, 1)) * np.repeat(packed.scales.numpy(), bs, 1)
    return E[ids]


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("block", [16, 32, 64])
def test_gather_block_quantized_matches_numpy_reference(bits, block):
    E = torch.randn(70, 128, generator=torch.Generator().manual_seed(bits + block))
    packed = quantize_embedding_table(E, bits, block)
    frag = quant_embedding_fragment("emb", packed, "ids", "y")
    graph = helper.make_graph(frag.nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 128])],
                              initializer=frag.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS_DOMAIN, 1)])
    onnx.checker.check_model(model)
    ids = np.array([[0, 5, 69], [3, 3, 41]], dtype=np.int64)
    got = make_session(model.SerializeToString(), "cpu").run(None, {"ids": ids})[0]
    np.testing.assert_allclose(got, numpy_reference(packed, ids), rtol=1e-6, atol=1e-6)
    # ... and our own dequantization agrees with both.
    np.testing.assert_allclose(QuantEmbedding(packed)(torch.from_numpy(ids)).numpy(), got, rtol=1e-6, atol=1e-6)
    assert torch.equal(dequantize_blockwise(unpack(packed)), dequantize_blockwise(quantize_blockwise(E, bits, block)))


def test_bad_tables_are_rejected():
    with pytest.raises(UserError, match="multiple of block_size"):
        quantize_embedding_table(torch.randn(10, 48), 4, 32)
    with pytest.raises(UserError, match="bits"):
        quantize_embedding_table(torch.randn(10, 64), 3, 32)
    E = torch.randn(10, 64)
    E[1, 1] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        quantize_embedding_table(E, 4, 32)


def test_tied_head_uses_the_quantized_table():
    from tests.conftest import tiny_gpt2

    model = tiny_gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    name, q = quantize_input_embedding(model, 4, 32)
    assert name == "transformer.wte"
    assert torch.equal(model.lm_head.weight, q.table())
