"""The block-offset correction (GGUF's block mins) computes the same in ONNX Runtime as in PyTorch, alone and inside
the fused decoder of a transcoded GGUF."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from svdq_edge.errors import UserError
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.onnx.linear import (
    MS_DOMAIN,
    Accumulate,
    AccuracyLevels,
    quant_linear_fragment,
    single_layer_model,
)
from svdq_edge.ggml import GGMLType, unpack
from svdq_edge.ggml.layout import to_mixed
from svdq_edge.model.lm import greedy_ids
from svdq_edge.quant.concat import concat_rows
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.runtimes.session import make_session
from tests.exporters.helpers import op_counts
from tests.ggml_files import random_blocks, write_tiny_llama_gguf

OFFSET_TYPES = [GGMLType.Q4_1, GGMLType.Q5_1, GGMLType.Q2_K, GGMLType.Q4_K, GGMLType.Q5_K]


def mixed_of(kind: GGMLType, N: int = 48, K: int = 256, seed: int = 0):
    return to_mixed(unpack(torch.from_numpy(random_blocks(kind, N, K, seed)), kind))


def run(model, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("accumulate", [Accumulate.GEMM, Accumulate.ADD], ids=lambda a: a.value)
@pytest.mark.parametrize("kind", OFFSET_TYPES, ids=lambda t: t.name)
def test_fragment_matches_pytorch(kind, accumulate):
    mixed = mixed_of(kind)
    N, K = mixed.shape
    frag = quant_linear_fragment("blk.layer", mixed, "x", "y", accumulate=accumulate)
    ops = [n.op_type for n in frag.nodes]
    assert ops[ops.index("MatMulNBits") + 1 :][:2] == ["Reshape", "ReduceSum"]
    assert ("Concat" in ops) == (mixed.packed.bits > 4)  # 8-bit containers at level 0 run as two 4-bit halves
    x = np.random.default_rng(0).standard_normal((2, 5, K)).astype(np.float32)
    want = (torch.from_numpy(x) @ mixed.dequantize().T).numpy()
    got = run(single_layer_model(frag, K, N), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    offsets = (torch.from_numpy(x) @ mixed.correction.dense(N, K).T).abs().max()
    assert offsets > 100 * 1e-4 * np.abs(want).max()  # far above the tolerance: dropping them would fail


def test_two_dimensional_stream_is_one_gemm():
    """The fused decoder's form: x [rows, K], Reshape + ReduceSum + one Gemm accumulating into MatMulNBits."""
    mixed = mixed_of(GGMLType.Q4_K, N=32)
    N, K = mixed.shape
    frag = quant_linear_fragment("w", mixed, "x", "y", accumulate=Accumulate.GEMM_2D)
    assert [n.op_type for n in frag.nodes] == ["MatMulNBits", "Reshape", "ReduceSum", "Gemm"]
    graph = helper.make_graph(frag.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["r", K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", N])],
                              initializer=frag.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS_DOMAIN, 1)])
    x = np.random.default_rng(1).standard_normal((3, K)).astype(np.float32)
    want = (torch.from_numpy(x) @ mixed.dequantize().T).numpy()
    np.testing.assert_allclose(run(model, x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_concat_rows_stacks_offsets_exactly():
    parts = [mixed_of(GGMLType.Q4_K, N=n, seed=n) for n in (32, 16, 16)]
    merged = concat_rows(parts)
    assert torch.equal(merged.dequantize(), torch.cat([p.dequantize() for p in parts]))


def test_accuracy_levels_parse_and_apply_by_width():
    levels = AccuracyLevels.of("0,8:4")
    assert (levels.for_bits(4), levels.for_bits(8), str(levels)) == (0, 4, "0,8:4")
    assert AccuracyLevels.of(4) == AccuracyLevels(4)
    for bad in ("5", "0,8", "x"):
        with pytest.raises(UserError, match="accuracy level"):
            AccuracyLevels.of(bad)


@pytest.mark.parametrize("head", [None, GGMLType.Q6_K], ids=["tied-q8", "head-q6k"])
def test_transcoded_gguf_fused_decoder_matches_pytorch(tmp_path, head):
    from svdq_edge.pipeline.transcode import transcode_gguf

    path = write_tiny_llama_gguf(tmp_path / "tiny.gguf", head=head)
    loaded, report = transcode_gguf(path, progress=False, tokenizer=False)
    out, sizes, layers = export_onnx(loaded, tmp_path / "onnx", report.config.to_dict(),
                                     accuracy_level=AccuracyLevels(0, ((8, 4),)))
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
    assert json.loads((out / "export.json").read_text())["accuracy_level"] == "0,8:4"
    offsets = [v for v in layers.values() if v.get("structure") == "block-offset"]
    assert op_counts(out / "model.onnx")["ReduceSum"] >= len(offsets) > 0
    assert op_counts(out / "model.onnx")["GatherBlockQuantized"] == 1
    model = loaded.model
    dec = OnnxDecoder(make_session(out, "cpu", threads=2))
    ids = torch.randint(0, model.config.vocab_size, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids).logits.numpy()
    logits, state = dec.prefill(ids[:, :6].numpy())
    scale = np.abs(ref).max()
    # 8-bit layers (the Q8_0 gate of layer 1, the head) run at accuracy level 4: int8 activations, approximate
    steps = [logits]
    for t in range(6, 10):
        step, state = dec.step(ids[:, t].numpy(), state)
        steps.append(step[:, None])
    assert np.abs(np.concatenate(steps, axis=1) - ref).max() < 0.1 * scale
    exact, _, _ = export_onnx(loaded, tmp_path / "exact", report.config.to_dict(), accuracy_level=0)
    logits0, _ = OnnxDecoder(make_session(exact, "cpu", threads=2)).prefill(ids.numpy())
    np.testing.assert_allclose(logits0, ref, atol=2e-4 * scale, rtol=1e-4)
    dec0 = OnnxDecoder(make_session(exact, "cpu", threads=2))
    assert list(generate_ids(dec0, [1, 5, 9], 12)) == greedy_ids(model, [1, 5, 9], 12)
