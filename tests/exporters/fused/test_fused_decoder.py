"""The fused decoder graphs (exporters/fused/): Llama, tied Llama with a shared quantized head, Qwen2 with q/k/v
biases, Mistral past its sliding window, GPT-2 (learned positions, Conv1D, LayerNorm), Gemma 3 (scaled and shared
embeddings, q/k norms, local and global layers past the window). Logits, cache steps and greedy tokens against the
PyTorch reference."""

import json

import numpy as np
import onnx
import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.errors import UserError
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.fused import FusedUnsupported
from svdq_edge.model.lm import greedy_ids
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import tiny_gemma3, tiny_gpt2, tiny_llama, tiny_llama_tied, tiny_mistral, tiny_qwen2
from tests.exporters.helpers import op_counts

CHANNEL = QuantConfig(method="range", bits=4, block_size=16, keep=0.05, structure="channel", embedding_bits=None)
CASES = {
    "llama": (tiny_llama, CHANNEL),
    "llama-tied-head8": (tiny_llama_tied, CHANNEL.replace(head_bits=8)),
    "llama-lowrank": (tiny_llama, CHANNEL.replace(structure="lowrank")),
    "llama-element": (tiny_llama, CHANNEL.replace(structure="element")),
    "llama-w3-embed4": (tiny_llama, CHANNEL.replace(bits=3, embedding_bits=4)),
    "llama-correct-o-down-head8": (tiny_llama_tied, CHANNEL.replace(correct=("o_proj", "down_proj"), head_bits=8)),
    "qwen2": (tiny_qwen2, CHANNEL),
    "mistral": (tiny_mistral, CHANNEL),
    "llama-fp32": (tiny_llama, None),
    "gpt2": (tiny_gpt2, CHANNEL),
    "gpt2-head8-lowrank": (tiny_gpt2, CHANNEL.replace(structure="lowrank", head_bits=8)),
    "gpt2-fp32": (tiny_gpt2, None),
    "gemma3": (tiny_gemma3, CHANNEL.replace(embedding_bits=4)),
    "gemma3-tied-head8": (tiny_gemma3, CHANNEL.replace(head_bits=8)),
    "gemma3-fp32": (tiny_gemma3, None),
}
RMS_NORMS = ("SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization")
NORMS = {"gpt2": ("SkipLayerNormalization", "LayerNormalization")}  # the others: RMS_NORMS
# Plain (non-skip) norms per layer beyond the first input norm: Gemma's post-attention/-feedforward and q/k norms.
EXTRA_NORMS = {"gemma3_text": 4}


def _export(name, tmp_path_factory, accuracy_level=0):
    make, cfg = CASES[name]
    model = make()
    if cfg is not None:
        quantize_model(model, cfg, progress=False)
    out, _, layers = export_onnx(LoadedModel(model, None, ModelTask.CAUSAL_LM, name),
                                 tmp_path_factory.mktemp(name) / "onnx", None if cfg is None else cfg.to_dict(),
                                 accuracy_level=accuracy_level)
    return model, out, layers


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory):
    return (request.param, *_export(request.param, tmp_path_factory))


def test_graph_is_fused_with_the_genai_layout(exported):
    name, model, out, _ = exported
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    ops = op_counts(out / "model.onnx")
    layers = model.config.num_hidden_layers
    assert ops["GroupQueryAttention"] == layers
    skip, first = NORMS.get(model.config.model_type, RMS_NORMS)
    assert ops[skip] == 2 * layers and ops[first] == 1 + EXTRA_NORMS.get(model.config.model_type, 0) * layers
    assert [i.name for i in m.graph.input][:2] == ["input_ids", "attention_mask"]  # no position_ids
    assert "position_ids" not in {i.name for i in m.graph.input}
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
    cfg = json.loads((out / "genai_config.json").read_text())
    assert cfg["search"]["past_present_share_buffer"] is True
    assert cfg["model"]["decoder"]["num_hidden_layers"] == layers
    if name.endswith("fp32"):
        assert ops["MatMulNBits"] == 0
    else:  # Llama packs q/k/v and gate/up into one MatMulNBits each (GPT-2 has 4 linears); the head stays FP32
        # unless head_bits is set
        assert ops["MatMulNBits"] == 4 * layers + (1 if "head8" in name else 0)


@pytest.mark.parametrize("name", sorted(n for n, (_, c) in CASES.items() if c is not None and c.structure.value ==
                                          "channel"))
def test_each_channel_correction_is_one_gemm(name, tmp_path_factory):
    model, out, layers = _export(name, tmp_path_factory)
    corrected = [v for v in layers.values() if v["kind"] == "linear" and v["structure"] == "channel"]
    assert op_counts(out / "model.onnx")["Gemm"] == len(corrected) > 0
    if CASES[name][1].correct:  # only o_proj and down_proj: 2 of the 4 emitted linears per layer
        assert len(corrected) == 2 * model.config.num_hidden_layers


def test_prefill_then_steps_match_pytorch_logits(exported):
    name, model, out, _ = exported
    dec = OnnxDecoder(make_session(out, "cpu", threads=2))
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids).logits.numpy()
    logits, state = dec.prefill(ids[:, :7].numpy())
    np.testing.assert_allclose(logits, ref[:, :7], atol=2e-4, rtol=1e-4)
    for t in range(7, 12):  # past Mistral's window of 5
        step, state = dec.step(ids[:, t].numpy(), state)
        np.testing.assert_allclose(step, ref[:, t], atol=2e-4, rtol=1e-4, err_msg=f"{name} step {t}")


def test_greedy_tokens_match_pytorch(exported):
    _, model, out, _ = exported
    dec = OnnxDecoder(make_session(out, "cpu", threads=2))
    for prompt in ([1, 5, 9], [3], list(range(10, 30))):
        assert list(generate_ids(dec, prompt, 16)) == greedy_ids(model, prompt, 16)


def test_tied_head_shares_one_table_with_the_embedding(tmp_path_factory):
    model, out, layers = _export("llama-tied-head8", tmp_path_factory)
    names = {i.name for i in onnx.load(str(out / "model.onnx")).graph.initializer}
    assert "lm_head.weight_Q4" in names  # the 8-bit head at level 0 runs as two 4-bit halves (runs_split)
    assert not any(n.startswith("model.embed_tokens.weight") for n in names)  # no second copy of the table
    assert op_counts(out / "model.onnx")["GatherBlockQuantized"] == 1
    assert layers["model.embed_tokens"]["shared_with_head"] is True


def test_accuracy_level_4_stays_close(tmp_path_factory):
    model, out, _ = _export("llama", tmp_path_factory, accuracy_level=4)
    ids = torch.randint(0, model.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(input_ids=ids).logits.numpy()
    logits, _ = OnnxDecoder(make_session(out, "cpu", threads=2)).prefill(ids.numpy())
    err = np.abs(logits - ref).max() / np.abs(ref).max()
    assert 0 < err < 0.05  # int8 activations: approximate, not exact


def test_uncovered_model_falls_back_to_the_traced_graph(tmp_path):
    model = tiny_llama()
    model.config.hidden_act = "gelu_pytorch_tanh"  # no fused Llama MLP for it
    for mlp in (layer.mlp for layer in model.model.layers):
        mlp.act_fn = torch.nn.GELU(approximate="tanh")
    loaded = LoadedModel(model, None, ModelTask.CAUSAL_LM, "llama-gelu")
    with pytest.raises(FusedUnsupported, match="activation"):
        export_onnx(loaded, tmp_path / "forced", graph="fused")
    assert not (tmp_path / "forced").exists()
    out, _, _ = export_onnx(loaded, tmp_path / "auto")
    assert json.loads((out / "export.json").read_text())["graph"] == "traced"
    assert not (out / "genai_config.json").exists()


def test_traced_path_can_be_forced_for_a_covered_family(tmp_path):
    out, _, _ = export_onnx(LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "llama"), tmp_path / "t",
                            graph="traced")
    assert json.loads((out / "export.json").read_text())["graph"] == "traced"
    assert op_counts(out / "model.onnx")["GroupQueryAttention"] == 0


def test_traced_sliding_window_is_refused_not_exported_wrong(tmp_path):
    """The dynamo trace of a Mistral with a 5-token window fails (GatherND index 7) once a sequence passes the
    window: forcing it is refused in one line, before any file is written; auto takes the fused graph, which the
    step-by-step test above checks past the window."""
    loaded = LoadedModel(tiny_mistral(), None, ModelTask.CAUSAL_LM, "mistral")
    with pytest.raises(UserError, match="5-token sliding window .*--graph fused"):
        export_onnx(loaded, tmp_path / "t", graph="traced")
    assert not (tmp_path / "t").exists()
    out, _, _ = export_onnx(loaded, tmp_path / "auto")
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
