"""Lazy, layer-by-layer quantization (pipeline/stream.py) equals the in-memory path bit for bit, and reloads."""

import pytest
import torch

from svdq_edge.artifact.io import load_quantized, save_quantized
from svdq_edge.config import QuantConfig
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.pipeline.stream import StreamError, quantize_any, quantize_lazily, stream_unsupported_reason
from svdq_edge.sources.lazy import LazyWeights
from tests.conftest import tiny_bert, tiny_gemma3, tiny_gpt2, tiny_llama_tied

CASES = {
    "bert-embed4": (tiny_bert, QuantConfig(block_size=16, keep=0.05, embedding_bits=4)),
    "gpt2-element": (tiny_gpt2, QuantConfig(block_size=16, keep=0.05, structure="element", embedding_bits=None)),
    # the default: the embedding quantized, the tied FP32 head reads the same (dequantized) table
    "llama-tied-embed4": (tiny_llama_tied, QuantConfig(block_size=16, keep=0.05, embedding_bits=4)),
    "gemma3-tied-embed4": (tiny_gemma3, QuantConfig(block_size=16, keep=0.05, embedding_bits=4)),
    "llama-tied-head8": (tiny_llama_tied, QuantConfig(block_size=16, keep=0.05, embedding_bits=None, head_bits=8)),
    "llama-tied-head4-lowrank": (tiny_llama_tied, QuantConfig(block_size=16, keep=0.05, structure="lowrank",
                                                              embedding_bits=None, head_bits=4)),
    "bert-int8-tensor": (tiny_bert, QuantConfig(bits=8, kernel="int8", method="rtn", keep=0.0, int8_scale="tensor",
                                                embedding_bits=None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lazy_equals_in_memory(case, tmp_path, monkeypatch):
    make, cfg = CASES[case]
    make().save_pretrained(tmp_path / "src")
    eager = make()
    report = quantize_model(eager, cfg, progress=False)
    monkeypatch.setattr("svdq_edge.pipeline.stream.TABLE_ROWS", 48)  # several row chunks on a 120/128-row table
    loaded, lazy_report = quantize_lazily(str(tmp_path / "src"), cfg, progress=False)
    want, got = eager.state_dict(), loaded.model.state_dict()
    assert sorted(want) == sorted(got)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert [r.name for r in report.layers] == [r.name for r in lazy_report.layers]
    for a, b in zip(report.layers, lazy_report.layers, strict=True):
        assert a.rel_error == pytest.approx(b.rel_error, rel=1e-5), a.name
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(eager(input_ids=ids).logits, loaded.model(input_ids=ids).logits)
    again, _ = load_quantized(save_quantized(loaded, lazy_report, tmp_path / "q"))
    with torch.no_grad():
        assert torch.equal(again.model(input_ids=ids).logits, loaded.model(input_ids=ids).logits)


def test_methods_that_run_the_model_are_not_streamed(tmp_path):
    tiny_llama_tied().save_pretrained(tmp_path / "src")
    assert "forward" in stream_unsupported_reason(str(tmp_path / "src"), QuantConfig(method="proxy"))
    assert "forward" in stream_unsupported_reason(str(tmp_path / "src"), QuantConfig(bits=8, kernel="int8",
                                                                                     int8_scale="auto"))
    assert "safetensors" in stream_unsupported_reason(str(tmp_path / "nowhere"), QuantConfig())
    with pytest.raises(StreamError):
        quantize_lazily(str(tmp_path / "src"), QuantConfig(method="proxy"))
    loaded, _ = quantize_any(str(tmp_path / "src"), QuantConfig(method="proxy", block_size=16), progress=False)
    assert loaded.model.model.layers[0].mlp.down_proj.bits == 4  # quantized in memory instead


def test_prefixed_checkpoints_resolve(tmp_path):
    """A classifier's checkpoint stores `bert.`-prefixed keys; the bare encoder's module names have none."""
    tiny_bert().save_pretrained(tmp_path / "cls")
    w = LazyWeights(tmp_path / "cls", prefix="bert")
    assert "embeddings.word_embeddings.weight" in w and "bert.embeddings.word_embeddings.weight" in w
    assert w.read("embeddings.word_embeddings.weight").shape == (120, 64)
    assert "nope.weight" not in w
