"""The web target: quantized token lookups in standard ops compute exactly what GatherBlockQuantized computes (2-,
4- and 8-bit tables, a decoder whose tied head shares the table's codes), and the WebGPU/JSEP bundle of
onnxruntime-web, which refuses the default export, runs the web one."""

import numpy as np
import onnx
import pytest

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.measure.latency import synthetic_feed
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask, load_model
from tests.conftest import missing, tiny_llama


def _ops(folder):
    return {n.op_type for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node}


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_encoder_web_export_is_bit_identical(tiny_bert_dir, tmp_path, bits):
    loaded = load_model(str(tiny_bert_dir))
    quantize_model(loaded.model, QuantConfig(bits=4, block_size=32, embedding_bits=bits), progress=False)
    cpu, _, _ = export_onnx(loaded, tmp_path / "cpu", {})
    web, _, _ = export_onnx(loaded, tmp_path / "web", {}, target="web")
    assert "GatherBlockQuantized" in _ops(cpu) and "GatherBlockQuantized" not in _ops(web)
    a, b = make_session(cpu, "cpu", 1), make_session(web, "cpu", 1)
    feed = synthetic_feed(a, 3, 11, vocab=120)
    np.testing.assert_array_equal(b.run(None, feed)[0], a.run(None, feed)[0])
    def size(folder):
        return sum(p.stat().st_size for p in folder.glob("model.onnx*"))

    assert size(web) - size(cpu) < 16_000  # the same initializers; a few dozen nodes and scalar constants


@pytest.mark.parametrize("head_bits", [None, 4])
def test_decoder_web_export_generates_the_same_tokens(tmp_path, head_bits):
    model = tiny_llama()  # tied: with a 4-bit head, the lookup reads the head's codes
    quantize_model(model, QuantConfig(bits=4, block_size=16, keep=0.05, embedding_bits=4, head_bits=head_bits,
                                      skip=()), progress=False)
    loaded = LoadedModel(model, None, ModelTask.CAUSAL_LM, "tiny")
    cpu, _, _ = export_onnx(loaded, tmp_path / "cpu", {}, accuracy_level=4)
    web, _, _ = export_onnx(loaded, tmp_path / "web", {}, accuracy_level=4, target="web")
    assert "GatherBlockQuantized" not in _ops(web)
    prompt = [5, 17, 33, 9]
    want = list(generate_ids(OnnxDecoder(make_session(cpu, "cpu", 1)), prompt, 12))
    assert list(generate_ids(OnnxDecoder(make_session(web, "cpu", 1)), prompt, 12)) == want


@pytest.mark.slow
def test_the_jsep_bundle_refuses_the_default_export_and_runs_the_web_one(tiny_bert_dir, tmp_path):
    from svdq_edge.runtime.runtimes.node import NodeRuntimeError, NodeSession, node_missing

    why = node_missing()
    if why is not None:
        missing(f"the JavaScript runtimes cannot run here: {why}")
    loaded = load_model(str(tiny_bert_dir))
    quantize_model(loaded.model, QuantConfig(bits=4, block_size=32, embedding_bits=4), progress=False)
    cpu, _, _ = export_onnx(loaded, tmp_path / "cpu", {})
    web, _, _ = export_onnx(loaded, tmp_path / "web", {}, target="web")
    with pytest.raises(NodeRuntimeError, match="GatherBlockQuantized"):
        NodeSession(cpu, 1, "onnxruntime-web/webgpu")
    jsep, py = NodeSession(web, 1, "onnxruntime-web/webgpu"), make_session(cpu, "cpu", 1)
    feed = synthetic_feed(py, 2, 9, vocab=120)
    np.testing.assert_allclose(jsep.run(None, feed)[0], py.run(None, feed)[0], atol=1e-5, rtol=1e-5)
    jsep.close()


def test_a_web_decoder_exports_at_accuracy_level_0_by_default(tmp_path):
    """The browser's WASM MatMulNBits computes in FP32 at any level: the web file is level 0 unless asked, so Python
    validates what the browser computes; the CPU target keeps the decoders' level 4."""
    import json

    from click.testing import CliRunner

    from svdq_edge.cli.app import main

    tiny_llama().save_pretrained(tmp_path / "lm")
    runner = CliRunner()
    r = runner.invoke(main, ["quantize", str(tmp_path / "lm"), "-o", str(tmp_path / "q"), "--block-size", "32",
                             "--embedding-bits", "none"])
    assert r.exit_code == 0, r.output
    levels = {}
    for target in ("cpu", "web"):
        r = runner.invoke(main, ["export", str(tmp_path / "q"), "-o", str(tmp_path / target), "--target", target])
        assert r.exit_code == 0, r.output
        levels[target] = json.loads((tmp_path / target / "export.json").read_text())["accuracy_level"]
    assert levels == {"cpu": "4", "web": "0"}
