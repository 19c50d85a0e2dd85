"""OpenVINO (extra `openvino`) runs our exported folders like ONNX Runtime does, in the same validation."""

import json

import numpy as np
import pytest

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.runtime.measure.latency import synthetic_feed
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import load_model
from tests.conftest import require_package
from tests.runtime.runtimes.helpers import run_across


@pytest.fixture(autouse=True)
def _openvino():
    require_package("openvino", "pip install 'svdq-edge[openvino]'")


def _quantized(folder, tmp_path):
    from svdq_edge.pipeline.apply import quantize_model

    loaded = load_model(str(folder))
    quantize_model(loaded.model, QuantConfig(bits=4, block_size=32, embedding_bits=4), progress=False)
    out, _, _ = export_onnx(loaded, tmp_path / "w4", overwrite=True)
    return out


def test_outputs_match_onnx_runtime_through_either_route(tiny_bert_dir, tmp_path):
    from svdq_edge.runtime.runtimes.openvino import OpenVinoSession

    fp32, _, _ = export_onnx(load_model(str(tiny_bert_dir)), tmp_path / "fp32", overwrite=True)
    w4 = _quantized(tiny_bert_dir, tmp_path)  # MatMulNBits and a GatherBlockQuantized embedding
    for folder in (fp32, w4):
        ort_sess = make_session(folder, "cpu", 1)
        ov_sess = OpenVinoSession(folder, threads=1, precision="f32")
        assert {i.name for i in ov_sess.get_inputs()} == {i.name for i in ort_sess.get_inputs()}
        feed = synthetic_feed(ort_sess, 2, 9, vocab=120)
        want, got = ort_sess.run(None, feed)[0], ov_sess.run(None, feed)[0]
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-3)
        assert ov_sess.precision == "f32" and ov_sess.route in ("read_model", "convert_model")


def test_a_folder_openvino_cannot_read_is_one_line(tmp_path):
    from svdq_edge.runtime.runtimes.openvino import OpenVinoLoadError, OpenVinoSession

    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(OpenVinoLoadError, match="OpenVINO cannot load .*read_model: .*; convert_model: "):
        OpenVinoSession(tmp_path)


def test_run_compares_runtimes_in_one_table(tiny_bert_dir, tmp_path):
    out = tmp_path / "report"
    r = run_across(tiny_bert_dir, out, "ort-cpu,openvino-f32,genai")
    assert r.exit_code == 0, r.output
    assert "runtime genai skipped: serves decoder models" in r.output
    report = json.loads((out / "report.json").read_text())
    rows = [(x["runtime"], x["backend"]["name"]) for x in report["results"]]
    assert rows == [(rt, b) for rt in ("ort-cpu", "openvino-f32") for b in ("fp32", "ort-int8", "ours")]
    ov_fp32 = report["results"][3]
    assert ov_fp32["kl"] < 1e-6 and ov_fp32["agree"] == 1  # the same FP32 graph in another runtime, against ORT's
    assert ov_fp32["runtime_note"].endswith(", f32") and ov_fp32["latency"][0]["p50_ms"] > 0
    md = (out / "report.md").read_text()
    assert md.count("| runtime ") == 1 and "openvino-f32/ours:" in md  # one table; the loading route is said
    assert (out / "latency.png").stat().st_size > 0 and (out / "accuracy_vs_size.png").stat().st_size > 0
