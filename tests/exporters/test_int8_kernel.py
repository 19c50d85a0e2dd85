"""The int8 kernel (DynamicQuantizeMatMul with the outlier input channels masked out and added back in FP32)
against a PyTorch reference of the same dynamic quantization, alone and in a fused BERT graph."""

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from svdq_edge.config import ConfigError, QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.onnx.linear import quant_linear_fragment, single_layer_model
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.quant.concat import concat_rows
from svdq_edge.quant.decompose import decompose
from svdq_edge.quant.int8 import dynamic_quant_matmul
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.saliency import ScoreContext
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import tiny_bert
from tests.exporters.helpers import op_counts

INT8 = QuantConfig(bits=8, kernel="int8", method="outlier", keep=0.05, embedding_bits=None)


def _layer(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(48, 96, generator=g)
    x = torch.randn(2, 5, 96, generator=g)
    x[..., 7] *= 60.0  # one outlier input channel
    s = x.abs().mean(dim=(0, 1))
    return W, x, decompose(W, INT8, ScoreContext(input_scale=s))


def _seven_bit(mixed):
    """The same weights in 7-bit codes (halved into [-64, 63], scales doubled). ORT's u8s8 GEMM on x86 CPUs without
    VNNI (AVX2, AVX512BW: VPMADDUBSW) adds pairs of u8 x s8 products in int16 with saturation (ONNX Runtime's
    quantization docs; measured on an AVX2-only EPYC: 7 of 480 outputs off, up to 37%). 7-bit codes cannot saturate,
    so the fragment's wiring (mask, scales, correction) is checked exactly on every CPU."""
    p = mixed.packed
    codes = torch.div(p.B.to(torch.int16) - 128, 2, rounding_mode="floor")
    return dataclasses.replace(mixed, packed=dataclasses.replace(p, B=(codes + 128).to(torch.uint8),
                                                                 scales=p.scales * 2))


def test_fragment_matches_the_pytorch_dynamic_quantization():
    W, x, mixed = _layer()
    assert 7 in mixed.correction.channels.tolist()  # `outlier` keeps the loud channel
    mixed = _seven_bit(mixed)
    frag = quant_linear_fragment("l", mixed, "x", "y", kernel="int8")
    assert [n.op_type for n in frag.nodes][:2] == ["Mul", "DynamicQuantizeMatMul"]
    sess = ort.InferenceSession(single_layer_model(frag, 96, 48).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    p, c = mixed.packed, mixed.correction
    B = p.B.reshape(p.N, -1).to(torch.int16) - 128
    masked = x.clone()
    masked[..., c.channels] = 0
    want = dynamic_quant_matmul(masked, B, p.scales.reshape(-1)) + x[..., c.channels] @ c.values.T
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5 * np.abs(want.numpy()).max())
    # Masking the outlier is what buys the fidelity: the unmasked int8 product is far worse.
    exact = x @ W.T
    plain = dynamic_quant_matmul(x, B, p.scales.reshape(-1)) + x[..., c.channels] @ c.values.T
    assert (want - exact).norm() < 0.5 * (plain - exact).norm()


def test_concatenated_layers_keep_every_weight_of_the_union_of_masked_channels():
    """q/k/v packed into one int8 matmul mask the union of their kept channels; a member that did not keep one of
    them still has weights there, which must move into the correction (they once vanished: cosine 0.94 on MiniLM)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 96, generator=g)
    x[..., 7] *= 60.0
    x[..., 40] *= 60.0
    parts, dense = [], []
    for loud in (7, 40):  # each layer keeps a different channel
        W = torch.randn(32, 96, generator=g)
        s = torch.ones(96)
        s[loud] = 100.0
        mixed = decompose(W, INT8.replace(keep=0.01), ScoreContext(input_scale=s))
        assert mixed.correction.channels.tolist() == [loud]
        parts.append(mixed)
        dense.append(mixed.dequantize())
    packed = concat_rows(parts)
    frag = quant_linear_fragment("qkv", packed, "x", "y", kernel="int8")
    sess = ort.InferenceSession(single_layer_model(frag, 96, 64).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    want = (x @ torch.cat(dense).T).numpy()  # the weights PyTorch holds, activations unrounded
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()


def test_int8_config_is_checked():
    for bad in (dict(bits=4), dict(structure="lowrank"), dict(kernel="int4")):
        with pytest.raises(ConfigError):
            INT8.replace(**bad)


@pytest.mark.parametrize("graph,scale", [("traced", "column"), ("fused", "column"), ("fused", "tensor")])
def test_int8_bert_export_matches_its_reference(tmp_path, graph, scale):
    model = tiny_bert()
    config = INT8.replace(int8_scale=scale)
    quantize_model(model, config, progress=False)
    out, _, layers = export_onnx(LoadedModel(model, None, ModelTask.SEQUENCE_CLASSIFICATION, "b"), tmp_path / graph,
                                 config.to_dict(), graph=graph)
    ops = op_counts(out / "model.onnx")
    assert ops["MatMulNBits"] == 0 and ops["DynamicQuantizeMatMul"] > 0
    onnx_model = onnx.load(out / "model.onnx")
    sizes = {i.name: int(np.prod(i.dims)) for i in onnx_model.graph.initializer}
    scale_sizes = {sizes[n.input[2]] for n in onnx_model.graph.node if n.op_type == "DynamicQuantizeMatMul"}
    # per tensor: one scale per matmul (packed q/k/v included), which ORT folds into its GEMM; per column: N of them
    assert scale_sizes == {1} if scale == "tensor" else 1 not in scale_sizes
    ids = torch.randint(0, 120, (2, 9), generator=torch.Generator().manual_seed(0))
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        ref = model(**feed).logits.numpy()  # weights exact, activations in FP32
    got = make_session(out, "cpu", 2).run(None, {k: v.numpy() for k, v in feed.items()})[0]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()  # only the run-time int8 input rounding differs


def test_size_report_counts_int8_codes_as_linears(tmp_path):
    """The int8 codes are the quantized linears' storage: the report's FP32 equivalent is the FP32 file's size (it
    once counted them as `other`, so int8 exports claimed a FP32 model 12% larger than the real one)."""
    model = tiny_bert()
    _, fp32, _ = export_onnx(LoadedModel(model, None, ModelTask.FEATURE_EXTRACTION, "t"), tmp_path / "fp32")
    quantize_model(model, INT8, progress=False)
    _, q, _ = export_onnx(LoadedModel(model, None, ModelTask.FEATURE_EXTRACTION, "t"), tmp_path / "q")
    assert q.linears > 0 and q.fp32_equivalent == pytest.approx(fp32.file_bytes, rel=0.05)  # was +24% here
