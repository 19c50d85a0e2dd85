"""genai_config.json / generation_config.json and the portable tokenizer_config.json of a fused decoder folder."""

import json

from svdq_edge.exporters.folder.genai import genai_config, make_tokenizer_portable, write_genai_files
from tests.conftest import tiny_llama, tiny_mistral


def test_genai_config_describes_the_graph():
    model = tiny_mistral()
    cfg = genai_config(model.config, "model.onnx", True, [2], None, 1)
    dec = cfg["model"]["decoder"]
    assert (dec["num_hidden_layers"], dec["num_attention_heads"], dec["num_key_value_heads"], dec["head_size"]) == (
        2, 4, 2, 16)
    assert dec["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert dec["outputs"]["present_value_names"] == "present.%d.value"
    assert "position_ids" not in dec["inputs"]
    assert cfg["model"]["type"] == "mistral" and cfg["model"]["eos_token_id"] == 2
    assert cfg["model"]["pad_token_id"] == 2  # falls back to end-of-sequence
    assert cfg["search"]["past_present_share_buffer"] is True
    assert cfg["search"]["max_length"] == cfg["model"]["context_length"] == 64


def test_folder_without_an_end_token_gets_no_genai_config(tmp_path, caplog):
    model = tiny_llama()
    model.config.eos_token_id = None
    model.generation_config.eos_token_id = None
    assert write_genai_files(tmp_path, model, None, "model.onnx", True) is False
    assert not (tmp_path / "genai_config.json").exists()
    assert "end-of-sequence" in caplog.text


def test_tokenizer_class_is_rewritten_for_older_readers(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend",
                                                                "model_max_length": 8192}))
    make_tokenizer_portable(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg == {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 8192}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    make_tokenizer_portable(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "BertTokenizer"
