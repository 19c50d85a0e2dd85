"""Traced KV-cache decoder export (tiny Llama and GPT-2 built in code; `graph="traced"`, Optimum's layout): graph
layout, logits and greedy tokens vs PyTorch. The fused graph has its own tests (test_fused_decoder.py)."""

import numpy as np
import onnx
import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.errors import UserError
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.traced.decoder import KVLayout
from svdq_edge.model.lm import greedy_ids
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import tiny_gpt2, tiny_llama
from tests.exporters.helpers import op_counts

DECODERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}
CFG = QuantConfig(method="range", bits=4, block_size=32, keep=0.02, structure="channel", embedding_bits=None)


@pytest.fixture(scope="module", params=sorted(DECODERS))
def exported(request, tmp_path_factory):
    model = DECODERS[request.param]()
    quantize_model(model, CFG, progress=False)
    out, _, _ = export_onnx(LoadedModel(model, None, ModelTask.CAUSAL_LM, request.param),
                            tmp_path_factory.mktemp(request.param) / "onnx", CFG.to_dict(), graph="traced")
    return request.param, model, out


def test_graph_has_the_optimum_kv_layout(exported):
    _, model, out = exported
    layout = KVLayout.of(model.config)
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    inputs = [i.name for i in m.graph.input]
    outputs = [o.name for o in m.graph.output]
    assert inputs == ["input_ids", "attention_mask", "position_ids", *layout.past_names()]
    assert outputs == ["logits", *layout.present_names()]
    past = next(i for i in m.graph.input if i.name == "past_key_values.0.key").type.tensor_type.shape.dim
    want = ["batch_size", layout.kv_heads, "past_sequence_length", layout.head_dim]  # transformers.js's names
    assert [d.dim_param or d.dim_value for d in past] == want
    assert op_counts(out / "model.onnx")["MatMulNBits"] == sum(1 for n, _ in model.named_modules()
                                                                 if type(_).__name__ == "QuantLinear")


def test_prefill_then_steps_match_pytorch_logits(exported):
    _, model, out = exported
    dec = OnnxDecoder(make_session(out, "cpu", threads=2))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=g)
    with torch.no_grad():
        ref = model(input_ids=ids).logits.numpy()
    logits, state = dec.prefill(ids[:, :4].numpy())
    np.testing.assert_allclose(logits, ref[:, :4], atol=1e-4, rtol=1e-4)
    for t in range(4, 7):  # one token at a time through the cache
        step, state = dec.step(ids[:, t].numpy(), state)
        np.testing.assert_allclose(step, ref[:, t], atol=1e-4, rtol=1e-4)
    assert state.past["past_key_values.0.key"].shape[2] == 7


def test_greedy_tokens_match_pytorch(exported):
    _, model, out = exported
    dec = OnnxDecoder(make_session(out, "cpu", threads=2))
    for prompt in ([1, 5, 9], [3], list(range(10, 30))):
        assert list(generate_ids(dec, prompt, 16)) == greedy_ids(model, prompt, 16)


def test_encoder_is_not_a_decoder(tmp_path):
    from tests.conftest import tiny_bert

    model = tiny_bert()
    out, _, _ = export_onnx(LoadedModel(model, None, ModelTask.SEQUENCE_CLASSIFICATION, "b"), tmp_path / "b")
    with pytest.raises(UserError, match="past_key_values"):
        OnnxDecoder(make_session(out, "cpu", threads=1))
