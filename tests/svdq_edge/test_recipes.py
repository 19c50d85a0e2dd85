import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.config import QuantConfig
from svdq_edge.recipes import read_recipe, recipe_names

RECIPES = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.json"))


def test_recipes_exist_and_hold_valid_configs():
    assert len(RECIPES) >= 3
    for path in RECIPES:
        recipe = json.loads(path.read_text())
        QuantConfig.from_dict(recipe["config"])
        assert recipe["task"] in ("feature-extraction", "causal-lm", "sequence-classification")


def test_recipe_sets_the_config_and_command_line_options_win(tiny_bert_dir, tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"config": {"bits": 3, "block_size": 32, "keep": 0.02, "structure": "lowrank"}}))
    out = tmp_path / "q"
    r = CliRunner().invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(out), "--recipe", str(recipe),
                                  "--keep", "0.05"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "quant_config.json").read_text())["config"]
    assert (cfg["bits"], cfg["block_size"], cfg["structure"], cfg["keep"]) == (3, 32, "lowrank", 0.05)


@pytest.mark.parametrize("content", ["not json", "[]", '{"config": 3}'])
def test_bad_recipe_is_a_one_line_error(tiny_bert_dir, tmp_path, content):
    recipe = tmp_path / "r.json"
    recipe.write_text(content)
    r = CliRunner().invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q"), "--recipe", str(recipe)])
    assert r.exit_code != 0 and "recipe" in r.output.strip().splitlines()[-1]
    assert not (tmp_path / "q").exists()


def test_shipped_recipes_are_found_by_name_and_equal_their_files():
    assert recipe_names() == [p.stem for p in RECIPES]
    for path in RECIPES:
        assert read_recipe(path.stem) == json.loads(path.read_text())


def test_recipe_by_name_on_the_command_line(tiny_bert_dir, tmp_path):
    out = tmp_path / "q"
    r = CliRunner().invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(out), "--recipe", "gpt2",
                                  "--block-size", "32"])  # the tiny model's width is 64
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "quant_config.json").read_text())["config"]
    expected = QuantConfig.from_dict(read_recipe("gpt2")["config"] | {"block_size": 32}).to_dict()
    assert cfg == expected and expected != QuantConfig(block_size=32).to_dict()


def test_unknown_recipe_name_lists_the_shipped_ones(tiny_bert_dir, tmp_path):
    r = CliRunner().invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q"), "--recipe", "nope"])
    last = r.output.strip().splitlines()[-1]
    assert r.exit_code != 0 and "nope: no such recipe" in last and "smollm2-135m" in last
    assert not (tmp_path / "q").exists()
