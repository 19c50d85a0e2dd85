"""transformers.js's layout: the file moves under onnx/ with its dtype suffix, external data is renamed and re-pointed,
config.json and tokenizer_config.json carry what transformers.js reads, and every svdq-edge reader (ORT sessions,
genai's config, inspect) finds the moved file. Tiny models built in code."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from svdq_edge.artifact.layout import find_model_file, model_file
from svdq_edge.cli.app import main
from svdq_edge.config import QuantConfig
from svdq_edge.errors import UserError
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.folder.transformers_js import dtype_of, to_transformers_js
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.decode.generate import generate_ids
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.measure.latency import synthetic_feed
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask, load_model
from tests.conftest import tiny_llama


def test_dtype_names_follow_the_narrowest_linear():
    def layer(bits, kind="linear"):
        return {"kind": kind, "bits": bits}

    assert dtype_of({}) == "fp32"
    assert dtype_of({"a": layer(8), "b": layer(8), "e": layer(4, "embedding")}) == "q8"
    assert dtype_of({"a": layer(4), "b": layer(8)}) == "q4"
    assert dtype_of({"a": layer(3)}) == "q4"
    assert dtype_of({"a": layer(2), "b": layer(4)}) == "q2"
    assert dtype_of({"e": layer(4, "embedding")}) == "q4"  # only the table is quantized


def test_encoder_layout_runs_as_the_ort_layout(tiny_bert_dir, tmp_path):
    loaded = load_model(str(tiny_bert_dir))
    quantize_model(loaded.model, QuantConfig(bits=4, block_size=32, embedding_bits=4), progress=False)
    ort, _, _ = export_onnx(loaded, tmp_path / "ort", {})
    tjs, _, _ = export_onnx(loaded, tmp_path / "tjs", {}, layout="transformers.js")
    assert not (tjs / "model.onnx").exists() and model_file(tjs) == tjs / "onnx" / "model_q4.onnx"
    assert not (tjs / "onnx" / "model_q4.onnx_data").exists()  # a small encoder stays one file
    config = json.loads((tjs / "config.json").read_text())
    assert config["transformers.js_config"] == {"dtype": "q4"}
    report = json.loads((tjs / "export.json").read_text())
    assert report["layout"] == "transformers.js" and report["transformers_js"]["file"] == "onnx/model_q4.onnx"
    a, b = make_session(ort, "cpu", 1), make_session(tjs, "cpu", 1)
    feed = synthetic_feed(a, 2, 9, vocab=120)
    np.testing.assert_array_equal(b.run(None, feed)[0], a.run(None, feed)[0])
    r = CliRunner().invoke(main, ["inspect", str(tjs)])
    assert r.exit_code == 0 and "onnx/model_q4.onnx: ONNX IR" in r.output, r.output


def test_decoder_external_data_is_renamed_and_genai_points_at_it(tmp_path):
    model = tiny_llama()
    quantize_model(model, QuantConfig(bits=8, block_size=16), progress=False)
    loaded = LoadedModel(model, None, ModelTask.CAUSAL_LM, "tiny")
    ort, _, _ = export_onnx(loaded, tmp_path / "ort", {}, accuracy_level=4)
    tjs, _, _ = export_onnx(loaded, tmp_path / "tjs", {}, accuracy_level=4, layout="transformers.js")
    assert sorted(p.name for p in (tjs / "onnx").iterdir()) == ["model_quantized.onnx", "model_quantized.onnx_data"]
    graph = onnx.load(str(tjs / "onnx" / "model_quantized.onnx"), load_external_data=False).graph
    locations = {e.value for t in graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"model_quantized.onnx_data"}
    config = json.loads((tjs / "config.json").read_text())["transformers.js_config"]
    assert config == {"dtype": "q8", "use_external_data_format": {"model_quantized.onnx": 1}}
    genai = json.loads((tjs / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["filename"] == "onnx/model_quantized.onnx"
    prompt = [5, 17, 33, 9]
    want = list(generate_ids(OnnxDecoder(make_session(ort, "cpu", 1)), prompt, 10))
    assert list(generate_ids(OnnxDecoder(make_session(tjs, "cpu", 1)), prompt, 10)) == want


def test_traced_decoder_dims_are_named_as_transformers_js_expects(tmp_path):
    loaded = LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "tiny")
    out, _, _ = export_onnx(loaded, tmp_path / "traced", graph="traced", layout="transformers.js")
    graph = onnx.load(str(model_file(out)), load_external_data=False).graph
    past = [v for v in graph.input if v.name.startswith("past_key_values.")]
    assert past and all(v.type.tensor_type.shape.dim[0].dim_param == "batch_size" for v in past)
    assert json.loads((out / "config.json").read_text())["transformers.js_config"]["dtype"] == "fp32"


def test_chat_template_joins_tokenizer_config(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save_model(onnx.helper.make_model(graph), str(folder / "model.onnx"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    to_transformers_js(folder, "q4")
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer["chat_template"] == (folder / "chat_template.jinja").read_text()
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_one_onnx_file_per_folder(tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    assert find_model_file(tmp_path) is None  # no config.json: a folder that holds an ONNX folder, not a model
    (tmp_path / "onnx" / "model.onnx").unlink()
    (tmp_path / "config.json").write_text("{}")
    assert find_model_file(tmp_path) is None
    with pytest.raises(UserError, match="no ONNX model"):
        model_file(tmp_path)
    for name in ("model_q4.onnx", "model_quantized.onnx"):
        (tmp_path / "onnx" / name).write_bytes(b"")
    with pytest.raises(UserError, match="several ONNX files"):
        find_model_file(tmp_path)


def test_cli_refuses_ort_format_in_the_transformers_js_layout(tiny_bert_dir, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q"), "--embedding-bits",
                                "none"]).exit_code == 0
    r = runner.invoke(main, ["export", str(tmp_path / "q"), "-o", str(tmp_path / "x"), "--layout", "transformers.js",
                             "--ort-format", "arm"])
    assert r.exit_code != 0 and "transformers.js" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x").exists()
