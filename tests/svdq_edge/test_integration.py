"""The real fine-tuned MiniLM-L6 SST-2 classifier from ../shared (skipped where ../shared is absent)."""

import pytest
import torch

from svdq_edge.artifact.io import load_quantized, quantized_layers, save_quantized
from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import read_glue_tsv
from svdq_edge.evaluation.evaluate import accuracy, predict_logits
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.sources.load import load_model
from tests.conftest import shared_path

pytestmark = pytest.mark.integration


def test_sst2_quantize_save_reload_same_predictions(tmp_path):
    model_dir = shared_path("models", "minilm-l6-sst2")
    data = read_glue_tsv(shared_path("data", "glue", "sst2", "dev.tsv"))
    loaded = load_model(str(model_dir))
    fp32_logits = predict_logits(loaded.model, loaded.tokenizer, data, progress=False)
    report = quantize_model(loaded.model, QuantConfig(method="svd", bits=4, keep=0.01), progress=False)
    assert len(report.layers) == 37  # 36 encoder linears and the word embedding
    assert all(n.startswith("bert.encoder.layer.") for n in quantized_layers(loaded.model))
    q_logits = predict_logits(loaded.model, loaded.tokenizer, data, progress=False)
    out = save_quantized(loaded, report, tmp_path / "q")
    again, _ = load_quantized(out)
    r_logits = predict_logits(again.model, again.tokenizer, data, progress=False)
    assert torch.equal(q_logits.argmax(-1), r_logits.argmax(-1))
    assert (q_logits - r_logits).abs().max() < 1e-5
    # W4 keeps the model within a point of FP32 on 872 sentences (paired: same examples).
    agree = (fp32_logits.argmax(-1) == q_logits.argmax(-1)).float().mean()
    assert agree > 0.95
    assert abs(accuracy(q_logits, data.labels).value - accuracy(fp32_logits, data.labels).value) < 0.02
