"""Whole-model export of tiny models built in code (BERT, Llama, GPT-2): parity with PyTorch under ORT CPU."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from svdq_edge.artifact.io import quantized_layers
from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.measure.evaluate import feed as ort_feed
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, detect_task
from tests.exporters.helpers import check_linear_counts, full_shape_fp32_tensors, op_counts


def feed_for(model, batch, seq, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[0, seq - 2 :] = 0  # some padding
    return {"input_ids": ids, "attention_mask": mask}


def run_both(model, path, batch=3, seq=9):
    sess = make_session(path, "cpu", threads=2)
    names = {i.name for i in sess.get_inputs()}
    feed = feed_for(model, batch, seq)
    if "token_type_ids" in names:
        feed["token_type_ids"] = torch.zeros_like(feed["input_ids"])
    with torch.no_grad():
        ref = model(**feed).logits.numpy()
    got = sess.run(None, ort_feed(sess, {k: v for k, v in feed.items()}))[0]
    return ref, got, feed["attention_mask"].numpy()


@pytest.mark.parametrize("structure", ["element", "channel", "lowrank"])
def test_quantized_tiny_models_export_and_match(tiny_model, structure, tmp_path):
    kind, model = tiny_model
    cfg = QuantConfig(method="range", bits=4, block_size=32, keep=0.02, structure=structure)
    quantize_model(model, cfg, progress=False)
    loaded = LoadedModel(model, None, detect_task(model.config), f"tiny-{kind}")
    out, sizes, layers = export_onnx(loaded, tmp_path / "onnx", cfg.to_dict())
    path = out / "model.onnx"
    q = quantized_layers(model)
    check_linear_counts(path, layers, len(q))
    assert op_counts(path)["GatherBlockQuantized"] >= 1
    assert full_shape_fp32_tensors(path, [(m.out_features, m.in_features) for m in q.values()]) == []
    # Batch and sequence are dynamic: run at shapes other than the trace's (2 x 16).
    ref, got, mask = run_both(model, out, batch=3, seq=9)
    valid = mask.astype(bool) if kind != "bert" else slice(None)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4, rtol=1e-4)
    assert sizes.correction > 0 and sizes.linears > 0
    assert 0 < sizes.ratio < 1


def test_fp32_tiny_export_matches(tiny_model, tmp_path):
    kind, model = tiny_model
    loaded = LoadedModel(model, None, detect_task(model.config), f"tiny-{kind}")
    out, sizes, _ = export_onnx(loaded, tmp_path / "fp32")
    ref, got, mask = run_both(model, out)
    valid = mask.astype(bool) if kind != "bert" else slice(None)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-5, rtol=1e-5)
    assert op_counts(out / "model.onnx")["MatMulNBits"] == 0
    assert sizes.ratio == 1.0


def test_graph_hygiene_names_and_metadata(tmp_path):
    from tests.conftest import tiny_bert

    model = tiny_bert()
    cfg = QuantConfig(method="svd", bits=4, block_size=32, keep=0.02, structure="element")
    quantize_model(model, cfg, progress=False)
    out, _, _ = export_onnx(LoadedModel(model, None, detect_task(model.config), "tiny"), tmp_path / "o",
                            cfg.to_dict(), graph="traced")  # the trace: one node group per HF linear, ONNX-checked
    m = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in m.graph.output] == ["logits"]
    dims = [d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert all(dims), "batch and sequence axes must be symbolic"
    assert {o.domain for o in m.opset_import} >= {"", "com.microsoft"}
    props = {p.key: p.value for p in m.metadata_props}
    assert QuantConfig.from_dict(json.loads(props["svdq_edge.quant_config"])) == cfg
    layers = {n: v for n, v in json.loads(props["svdq_edge.layers"]).items() if v["kind"] == "linear"}
    assert len(layers) == 12 and all(v["structure"] == "element" for v in layers.values())
    names = {i.name for i in m.graph.initializer}
    for layer in layers:
        assert {f"{layer}.weight_Q4", f"{layer}.weight_scales", f"{layer}.weight_zp", f"{layer}.weight_corr_idx",
                f"{layer}.weight_corr_val"} <= names
    assert (out / "config.json").is_file() and (out / "export.json").is_file()


def test_existing_output_is_refused_and_left_alone(tmp_path):
    from svdq_edge.artifact.outputs import OutputExistsError
    from tests.conftest import tiny_bert

    out = tmp_path / "o"
    out.mkdir()
    (out / "mine").write_text("x")
    model = tiny_bert()
    with pytest.raises(OutputExistsError):
        export_onnx(LoadedModel(model, None, detect_task(model.config), "tiny"), out)
    assert (out / "mine").read_text() == "x"


def test_quantized_embedding_exports_as_gather_block_quantized(tiny_model, tmp_path):
    from svdq_edge.artifact.io import load_quantized, save_quantized
    from svdq_edge.model.embedding import QuantEmbedding

    kind, model = tiny_model
    cfg = QuantConfig(bits=4, block_size=32, keep=0.02, embedding_bits=4)
    report = quantize_model(model, cfg, progress=False)
    emb = model.get_input_embeddings()
    assert isinstance(emb, QuantEmbedding) and report.layers[-1].name.endswith(("word_embeddings", "embed_tokens",
                                                                                "wte"))
    loaded = LoadedModel(model, None, detect_task(model.config), f"tiny-{kind}")
    # Save / reload keeps the quantized table and the outputs.
    again, _ = load_quantized(save_quantized(loaded, report, tmp_path / "q"))
    batch = feed_for(model, 2, 5)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again.model(**batch).logits)
    out, sizes, layers = export_onnx(loaded, tmp_path / "onnx", cfg.to_dict())
    counts = op_counts(out / "model.onnx")
    assert counts["GatherBlockQuantized"] >= 1  # transformers' GPT-2 gathers its table twice
    emb_shape = (emb.num_embeddings, emb.embedding_dim)
    m = onnx.load(str(out / "model.onnx"))
    fp32_tables = {i.name for i in m.graph.initializer if tuple(i.dims) == emb_shape and i.data_type == 1}
    assert not any(n.op_type == "Gather" and n.input[0] in fp32_tables for n in m.graph.node)
    assert sizes.quantized_embeddings > 0
    ref, got, mask = run_both(model, out)
    valid = mask.astype(bool) if kind != "bert" else slice(None)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method,structure", [("awq", "channel"), ("spqr", "element"), ("gptq", "channel"),
                                              ("rosaq", "lowrank")])
def test_calibrated_methods_export_and_match(tiny_model, method, structure, tmp_path):
    from svdq_edge.calib.calibrate import collect_stats
    from svdq_edge.model.targets import find_targets

    kind, model = tiny_model
    cfg = QuantConfig(method=method, bits=4, block_size=32, keep=0.02, structure=structure)
    names = [n for n, _ in find_targets(model, cfg.skip)]
    stats = collect_stats(model, names, [feed_for(model, 4, 12, seed=s) for s in range(3)], progress=False)
    quantize_model(model, cfg, stats, progress=False)
    out, _, layers = export_onnx(LoadedModel(model, None, detect_task(model.config), f"tiny-{kind}"),
                                 tmp_path / "onnx", cfg.to_dict())
    check_linear_counts(out / "model.onnx", layers, len(quantized_layers(model)))
    ref, got, mask = run_both(model, out, batch=3, seq=9)
    valid = mask.astype(bool) if kind != "bert" else slice(None)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_encoders_without_token_types_export_only_the_inputs_their_tokenizers_give(family, tmp_path):
    """RoBERTa (one token type) and DistilBERT (no token_type_ids argument): the graph takes input_ids and
    attention_mask only, as their tokenizers produce, and matches PyTorch (W4 and FP32)."""
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(0)
    if family == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(
            vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=40, type_vocab_size=1, num_labels=2)).eval()
    else:
        model = DistilBertForSequenceClassification(DistilBertConfig(
            vocab_size=120, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=40,
            num_labels=2)).eval()
    model.config.architectures = [type(model).__name__]
    ids = torch.randint(3, 120, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    for quantized in (False, True):
        if quantized:
            cfg = QuantConfig(block_size=32, embedding_bits=None)
            quantize_model(model, cfg, progress=False)
        out, _, _ = export_onnx(LoadedModel(model, None, detect_task(model.config), family),
                                tmp_path / f"{family}-{quantized}", cfg.to_dict() if quantized else None)
        sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
        got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask).logits.numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
