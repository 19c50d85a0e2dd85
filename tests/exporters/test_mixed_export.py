"""Mixed-precision exports (4 and 8 bits per layer under a budget) against their PyTorch reference, fused and traced."""

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


def _export(tmp_path, config: QuantConfig, graph: str):
    model = tiny_bert()
    report = quantize_model(model, config, progress=False)
    assert {b for _, b in report.config.layer_bits} == {4, 8}
    out, _, _ = export_onnx(LoadedModel(model, None, ModelTask.SEQUENCE_CLASSIFICATION, "b"), tmp_path / graph,
                            report.config.to_dict(), graph=graph, accuracy_level=0)
    ids = torch.randint(0, 120, (2, 9), generator=torch.Generator().manual_seed(0))
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        ref = model(**feed).logits.numpy()
    got = make_session(out, "cpu", 2).run(None, {k: v.numpy() for k, v in feed.items()})[0]
    return op_counts(out / "model.onnx"), got, ref


@pytest.mark.parametrize("graph", ["traced", "fused"])
def test_mixed_matmulnbits_export_matches_pytorch(tmp_path, graph):
    ops, got, ref = _export(tmp_path, QuantConfig(bits_budget=6.0, block_size=32, embedding_bits=None), graph)
    assert ops["MatMulNBits"] > 0 and ops.get("DynamicQuantizeMatMul", 0) == 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("graph", ["traced", "fused"])
def test_mixed_int8_export_runs_8_bit_layers_on_int8(tmp_path, graph):
    config = QuantConfig(bits_budget=6.0, block_size=32, kernel="int8", embedding_bits=None)
    ops, got, ref = _export(tmp_path, config, graph)
    assert ops["MatMulNBits"] > 0 and ops["DynamicQuantizeMatMul"] > 0
    assert np.abs(got - ref).max() < 0.01 * np.abs(ref).max()  # only the run-time int8 input rounding differs
