"""Export parity on the real MiniLM-L6 SST-2 classifier over all 872 SST-2 dev sentences (ORT CPU)."""

import numpy as np
import pytest

from svdq_edge.artifact.io import quantized_layers
from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import read_glue_tsv
from svdq_edge.evaluation.evaluate import predict_logits
from svdq_edge.exporters.export import export_onnx
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.measure.evaluate import onnx_outputs
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import load_model
from tests.conftest import shared_path
from tests.exporters.helpers import full_shape_fp32_tensors, op_counts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sst2():
    return read_glue_tsv(shared_path("data", "glue", "sst2", "dev.tsv"))


def test_fp32_export_matches_pytorch(sst2, tmp_path):
    loaded = load_model(str(shared_path("models", "minilm-l6-sst2")))
    ref = predict_logits(loaded.model, loaded.tokenizer, sst2, progress=False).numpy()
    out, sizes, _ = export_onnx(loaded, tmp_path / "fp32")
    got = onnx_outputs(make_session(out, "cpu", threads=2), loaded.tokenizer, sst2, progress=False)
    assert np.abs(got - ref).max() <= 1e-4
    assert sizes.ratio == 1.0


@pytest.mark.parametrize("structure", ["element", "channel", "lowrank"])
def test_svd_w4_export_matches_quantlinear(sst2, structure, tmp_path):
    loaded = load_model(str(shared_path("models", "minilm-l6-sst2")))
    cfg = QuantConfig(method="svd", bits=4, block_size=128, keep=0.01, structure=structure)
    quantize_model(loaded.model, cfg, progress=False)
    ref = predict_logits(loaded.model, loaded.tokenizer, sst2, progress=False).numpy()
    out, sizes, layers = export_onnx(loaded, tmp_path / structure, cfg.to_dict())
    path = out / "model.onnx"
    got = onnx_outputs(make_session(out, "cpu", threads=2), loaded.tokenizer, sst2, progress=False)
    assert np.abs(got - ref).max() <= 1e-3
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    q = quantized_layers(loaded.model)
    assert len(q) == 36 and op_counts(path)["MatMulNBits"] == 24  # the fused graph packs q/k/v into one
    assert full_shape_fp32_tensors(path, [(m.out_features, m.in_features) for m in q.values()]) == []
    assert sizes.ratio < 1.0


@pytest.mark.parametrize("method,structure", [("awq", "channel"), ("spqr", "element"), ("rosaq", "lowrank")])
def test_calibrated_w4_export_matches_quantlinear(sst2, method, structure, tmp_path):
    from svdq_edge.pipeline.apply import calibrate_model

    loaded = load_model(str(shared_path("models", "minilm-l6-sst2")))
    cfg = QuantConfig(method=method, bits=4, block_size=128, keep=0.01, structure=structure, calib_samples=64,
                      calib_data=str(shared_path("data", "glue", "sst2", "train.tsv")))
    quantize_model(loaded.model, cfg, calibrate_model(loaded.model, loaded.tokenizer, cfg, progress=False),
                   progress=False)
    ref = predict_logits(loaded.model, loaded.tokenizer, sst2, progress=False).numpy()
    out, _, _ = export_onnx(loaded, tmp_path / method, cfg.to_dict())
    got = onnx_outputs(make_session(out, "cpu", threads=2), loaded.tokenizer, sst2, progress=False)
    assert np.abs(got - ref).max() <= 1e-3
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    q = quantized_layers(loaded.model)
    assert len(q) == 36 and op_counts(out / "model.onnx")["MatMulNBits"] == 24  # q/k/v packed (fused graph)
    assert full_shape_fp32_tensors(out / "model.onnx", [(m.out_features, m.in_features) for m in q.values()]) == []
