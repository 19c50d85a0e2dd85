"""One quantized layer as ONNX: MatMulNBits + correction against the PyTorch math, under ONNX Runtime CPU."""

import numpy as np
import onnx
import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.onnx.linear import (
    choose_element_form,
    compact_layout,
    ell_layout,
    quant_linear_fragment,
    single_layer_model,
)
from svdq_edge.quant.decompose import decompose
from svdq_edge.runtime.runtimes.session import make_session

CASES = [  # structure, element form
    ("element", "ell"), ("element", "compact"), ("element", "auto"), ("channel", "auto"), ("lowrank", "auto"),
]


def run_layer(frag, K, N, x):
    model = single_layer_model(frag, K, N)
    onnx.checker.check_model(model)
    return make_session(model.SerializeToString(), "cpu", threads=2).run(None, {"x": x})[0]


@pytest.mark.parametrize("structure, form", CASES)
@pytest.mark.parametrize("bits, block, K", [(4, 32, 96), (3, 16, 100), (2, 64, 130), (8, 128, 200), (4, 256, 300)])
def test_layer_matches_dequantized_math(structure, form, bits, block, K):
    g = torch.Generator().manual_seed(bits * 1000 + K)
    N = 24
    W = torch.randn(N, K, generator=g)
    W[3, 5] = 8.0
    mixed = decompose(W, QuantConfig(method="magnitude", bits=bits, block_size=block, keep=0.03, structure=structure))
    x = torch.randn(2, 5, K, generator=g).numpy()
    y = run_layer(quant_linear_fragment("enc.layer.0.fc", mixed, "x", "y", form), K, N, x)
    expected = x @ mixed.dequantize().numpy().T
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_no_correction_is_one_matmulnbits_node_with_named_initializers():
    W = torch.randn(16, 64)
    frag = quant_linear_fragment("m.q_proj", decompose(W, QuantConfig(method="rtn", block_size=32)), "x", "y")
    assert [n.op_type for n in frag.nodes] == ["MatMulNBits"]
    assert [i.name for i in frag.initializers] == ["m.q_proj.weight_Q4", "m.q_proj.weight_scales",
                                                   "m.q_proj.weight_zp"]
    attrs = {a.name: a.i for a in frag.nodes[0].attribute}
    assert attrs == {"K": 64, "N": 16, "bits": 4, "block_size": 32, "accuracy_level": 0}


def test_three_bit_codes_run_in_the_four_bit_container():
    W = torch.randn(8, 64)
    frag = quant_linear_fragment("l", decompose(W, QuantConfig(method="rtn", bits=3, block_size=32)), "x", "y")
    assert {a.name: a.i for a in frag.nodes[0].attribute}["bits"] == 4
    assert frag.initializers[0].name == "l.weight_Q4"


def test_ell_and_compact_layouts_rebuild_the_correction():
    W = torch.randn(10, 40)
    mixed = decompose(W, QuantConfig(method="magnitude", keep=0.1, block_size=16, structure="element"))
    c = mixed.correction
    S = c.dense(10, 40).numpy()
    idx, val = ell_layout(c, 10)
    rebuilt = np.zeros_like(S)
    for n in range(10):
        np.add.at(rebuilt[n], idx[n], val[n])
    np.testing.assert_array_equal(rebuilt, S)
    cols, dense_t = compact_layout(c, 10)
    rebuilt = np.zeros_like(S)
    rebuilt[:, cols] = dense_t.T
    np.testing.assert_array_equal(rebuilt, S)
    assert choose_element_form(c, 10) in ("ell", "compact")


def test_unknown_element_form_is_rejected():
    mixed = decompose(torch.randn(4, 32), QuantConfig(block_size=16))
    with pytest.raises(ValueError, match="element_form"):
        quant_linear_fragment("l", mixed, "x", "y", "dense")
