"""sentence-transformers' files (the pipeline: pooling, normalization, max_seq_length) travel from the source folder
into the quantized folder and on into the ONNX folder."""

import json

from click.testing import CliRunner

from svdq_edge.artifact.side_files import sentence_transformers_files
from svdq_edge.cli.app import main


def _make_sentence_transformer(folder):
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 64,
                                                                   "pooling_mode_mean_tokens": True}))


def test_quantize_and_export_carry_the_pipeline(tiny_bert_dir, tmp_path):
    _make_sentence_transformer(tiny_bert_dir)
    runner = CliRunner()
    r = runner.invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q"), "--block-size", "32"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(tmp_path / "q"), "-o", str(tmp_path / "onnx")])
    assert r.exit_code == 0, r.output
    for folder in (tmp_path / "q", tmp_path / "onnx"):
        assert {p.name for p in sentence_transformers_files(folder)} == {"modules.json", "sentence_bert_config.json",
                                                                          "1_Pooling"}
        assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
        assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]


def test_a_folder_without_them_gets_none_and_odd_paths_are_ignored(tiny_bert_dir, tmp_path):
    assert sentence_transformers_files(tiny_bert_dir) == []
    (tiny_bert_dir / "modules.json").write_text(json.dumps([{"path": "../elsewhere"}, {"path": "missing"}]))
    assert [p.name for p in sentence_transformers_files(tiny_bert_dir)] == ["modules.json"]
