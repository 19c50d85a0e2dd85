"""The fused BERT encoder graph (exporters/fused/bert.py): same outputs as PyTorch with padding and token types, for
a classifier and a feature extractor, FP32 and quantized; ORT's INT8 dynamic quantizer accepts it."""

import json

import numpy as np
import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import tiny_bert
from tests.exporters.helpers import op_counts

CASES = {"classifier": ModelTask.SEQUENCE_CLASSIFICATION, "features": ModelTask.FEATURE_EXTRACTION}


def _model(kind: str, quantized: bool):
    model = tiny_bert() if kind == "classifier" else tiny_bert().bert
    if quantized:
        quantize_model(model, QuantConfig(block_size=16, keep=0.05), progress=False)
    return model


def _feed():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 120, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding: must not leak into the other tokens
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "w4"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_fused_encoder_matches_pytorch(tmp_path, kind, quantized):
    model = _model(kind, quantized)
    out, _, layers = export_onnx(LoadedModel(model, None, CASES[kind], kind), tmp_path / "onnx", graph="fused")
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
    ops = op_counts(out / "model.onnx")
    n = model.config.num_hidden_layers
    assert ops["MultiHeadAttention"] == n and ops["SkipLayerNormalization"] == 2 * n and ops["BiasGelu"] == n
    # Adds: the embeddings sum, and the pooler's and classifier's biases; every encoder linear's bias sits in the
    # fused op after it
    assert ops.get("Add", 0) == 2 + 2 * (kind == "classifier")
    assert ops["MatMulNBits"] == (4 * n if quantized else 0)  # q/k/v packed into one per layer
    feed = _feed()
    with torch.no_grad():
        o = model(**feed)
    ref = (o.logits if kind == "classifier" else o.last_hidden_state).numpy()
    got = make_session(out, "cpu", threads=2).run(None, {k: v.numpy() for k, v in feed.items()})[0]
    if kind == "features":  # padded positions are not compared (PyTorch computes them from masked attention too)
        keep = feed["attention_mask"].bool().numpy()
        got, ref = got[keep], ref[keep]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max() + 1e-6)


def test_int8_dynamic_quantizes_the_fused_graph(tmp_path):
    from svdq_edge.runtime.validation.baselines import build_baseline

    model = _model("classifier", False)
    fp32, _, _ = export_onnx(LoadedModel(model, None, ModelTask.SEQUENCE_CLASSIFICATION, "c"), tmp_path / "fp32",
                             graph="fused")
    int8 = build_baseline("ort-int8", fp32, tmp_path / "int8")
    assert op_counts(int8 / "model.onnx")["DynamicQuantizeMatMul"] + op_counts(int8 / "model.onnx")[
        "MatMulInteger"] > 0
    feed = {k: v.numpy() for k, v in _feed().items()}
    a = make_session(fp32, "cpu", 2).run(None, feed)[0]
    b = make_session(int8, "cpu", 2).run(None, feed)[0]
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()


def test_covered_encoders_take_the_fused_graph_and_others_the_trace(tmp_path):
    out, _, _ = export_onnx(LoadedModel(tiny_bert(), None, ModelTask.SEQUENCE_CLASSIFICATION, "c"), tmp_path / "t")
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
    relu = tiny_bert()
    relu.config.hidden_act = "relu"  # no fused activation for it: the trace covers any architecture
    out, _, _ = export_onnx(LoadedModel(relu, None, ModelTask.SEQUENCE_CLASSIFICATION, "c"), tmp_path / "r")
    assert json.loads((out / "export.json").read_text())["graph"] == "traced"
