"""QuantConfig's per-layer options, shown on `layer_keep`: one field in config.py reaches both quantize paths (the
in-memory and the lazy one share pipeline/layers.py), the saved folder and the export."""

import json

import pytest

from svdq_edge.config import ConfigError, QuantConfig
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.pipeline.stream import quantize_lazily
from tests.conftest import tiny_bert


def test_layer_keep_takes_the_longest_matching_substring_and_correct_still_wins():
    c = QuantConfig(keep=0.01, layer_keep={"mlp": 0.02, "mlp.down_proj": 0.04})
    assert c.for_layer("model.layers.0.mlp.down_proj").keep == 0.04
    assert c.for_layer("model.layers.0.mlp.up_proj").keep == 0.02
    assert c.for_layer("model.layers.0.self_attn.q_proj").keep == 0.01
    assert QuantConfig(layer_keep={"mlp": 0.04}, correct=("o_proj",)).for_layer("x.mlp.up_proj").keep == 0.0


@pytest.mark.parametrize("bad", [{"mlp": 0.6}, {"": 0.1}, {"mlp": "lots"}, [("mlp",)]])
def test_layer_keep_is_validated(bad):
    with pytest.raises(ConfigError, match="layer_keep"):
        QuantConfig(layer_keep=bad)


def test_layer_keep_round_trips_and_is_absent_when_unset():
    assert "layer_keep" not in QuantConfig().to_dict()  # configs written before it keep their bytes
    c = QuantConfig(layer_keep={"intermediate": 0.05})
    assert QuantConfig.from_dict(json.loads(c.to_json())) == c


def test_layer_keep_reaches_both_quantize_paths_equally(tmp_path):
    cfg = QuantConfig(block_size=16, keep=0.0, layer_keep={"intermediate.dense": 0.05}, embedding_bits=None)
    eager = tiny_bert()
    report = quantize_model(eager, cfg, progress=False)
    kept = {r.name: r.kept for r in report.layers}
    assert all((k > 0) == ("intermediate.dense" in n) for n, k in kept.items()) and any(kept.values())
    tiny_bert().save_pretrained(tmp_path / "src")
    _, lazy = quantize_lazily(str(tmp_path / "src"), cfg, progress=False)
    assert {r.name: r.kept for r in lazy.layers} == kept
