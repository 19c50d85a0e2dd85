"""Per-layer mixed precision: the knapsack assignment, the config that records it, and quantize_model under a budget."""

import copy

import pytest
import torch

from svdq_edge.calib.sensitivity import group_sensitivity
from svdq_edge.calib.synthetic_calib import random_tokens
from svdq_edge.config import ConfigError, Kernel, QuantConfig
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.quant.decompose import decompose
from svdq_edge.quant.mixed_bits import assign_bits, packed_groups
from tests.conftest import tiny_bert, tiny_llama


def test_packed_siblings_share_a_group():
    names = ["l.0.attn.q_proj", "l.0.attn.k_proj", "l.0.attn.v_proj", "l.0.attn.o_proj", "l.0.mlp.gate_proj",
             "l.0.mlp.up_proj", "l.0.mlp.down_proj", "l.1.attn.q_proj", "l.1.attn.k_proj", "l.1.attn.v_proj"]
    assert packed_groups(names) == [names[:3], ["l.0.attn.o_proj"], names[4:6], ["l.0.mlp.down_proj"], names[7:]]


def _cost(sizes: dict[str, int]) -> dict[str, dict[int, float]]:
    return {n: {4: 4.5 * k, 8: 8.25 * k} for n, k in sizes.items()}


def test_assignment_upgrades_the_most_sensitive_per_bit_within_the_budget():
    sizes = {"a": 100, "b": 100, "c": 400}
    sens = {("a",): 1.0, ("b",): 0.1, ("c",): 2.0}  # per extra bit: a 2.7e-3, c 1.3e-3, b 2.7e-4
    n = sum(sizes.values())
    assert assign_bits(_cost(sizes), sens, n, 4.5, 4) == {"a": 4, "b": 4, "c": 4}
    assert assign_bits(_cost(sizes), sens, n, 5.2, 4) == {"a": 8, "b": 4, "c": 4}
    # c does not fit beside a at 6.5, but b still does: the greedy goes on down the list
    assert assign_bits(_cost(sizes), sens, n, 5.9, 4) == {"a": 8, "b": 8, "c": 4}
    assert assign_bits(_cost(sizes), sens, n, 8.25, 4) == {"a": 8, "b": 8, "c": 8}
    for budget in (5.2, 5.9, 7.0):
        a = assign_bits(_cost(sizes), sens, n, budget, 4)
        assert sum(_cost(sizes)[k][b] for k, b in a.items()) <= budget * n


def test_a_group_gets_one_width():
    sizes = {"x.query": 10, "x.key": 10, "x.value": 10, "x.dense": 30}
    sens = {("x.query", "x.key", "x.value"): 1.0, ("x.dense",): 0.5}
    a = assign_bits(_cost(sizes), sens, 60, 6.4, 4)
    assert a == {"x.query": 8, "x.key": 8, "x.value": 8, "x.dense": 4}


def test_a_budget_below_the_low_width_is_refused():
    with pytest.raises(ConfigError, match="below 4.500"):
        assign_bits(_cost({"a": 10}), {("a",): 1.0}, 10, 4.2, 4)


def test_config_records_the_assignment_and_picks_the_kernel_per_layer():
    c = QuantConfig(bits_budget=6.0, kernel="int8", layer_bits={"l.b": 8, "l.a": 4})
    assert c.layer_bits == (("l.a", 4), ("l.b", 8))
    assert QuantConfig.from_dict(c.to_dict()) == c
    assert c.for_layer("l.b").bits == 8 and c.for_layer("l.b").kernel is Kernel.INT8
    assert c.for_layer("l.a").bits == 4 and c.for_layer("l.a").kernel is Kernel.NBITS
    assert c.for_layer("other").bits == 4
    for bad in (dict(bits=8, bits_budget=9.0), dict(bits_budget=3.0), dict(layer_bits={"x": 5}),
                dict(kernel="int8")):
        with pytest.raises(ConfigError):
            QuantConfig(**bad)


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama])
def test_quantize_model_meets_the_budget_and_rebuilds_from_the_saved_assignment(make):
    model = make()
    config = QuantConfig(bits_budget=6.0, block_size=32, embedding_bits=None)
    report = quantize_model(model, config, progress=False)
    widths = dict(report.config.layer_bits)
    assert set(widths.values()) == {4, 8}
    assert report.mean_bits() <= 6.0
    for group in packed_groups(list(widths)):
        assert len({widths[n] for n in group}) == 1
    again = make()  # the saved config (assignment, no search) gives the same codes
    quantize_model(again, report.config, progress=False)
    for name in widths:
        a, b = model.get_submodule(name).mixed.packed, again.get_submodule(name).mixed.packed
        assert a.bits == b.bits == widths[name] and torch.equal(a.B, b.B)


def test_the_layer_fed_by_outliers_gets_8_bits():
    """Sensitivity is measured end to end: a layer whose input carries huge values (its producer's first input
    column set to 40, so every intermediate channel is loud after GELU) loses most when quantized, and it is the one
    the budget upgrades, not its producer."""
    model = tiny_bert()
    names = [n for n, _ in find_targets(model, QuantConfig().skip)]
    producer, victim = "bert.encoder.layer.1.intermediate.dense", "bert.encoder.layer.1.output.dense"
    with torch.no_grad():
        linear_weight(model.get_submodule(producer))[:, 0] = 40.0
    n = sum(linear_weight(model.get_submodule(k)).numel() for k in names)
    size = linear_weight(model.get_submodule(victim)).numel()
    config = QuantConfig(block_size=32, keep=0.0, embedding_bits=None)
    low = quantize_model(copy.deepcopy(model), config, progress=False).mean_bits()
    budget = low + 4.3 * size / n  # room for one FFN layer at 8 bits (9.25 bits/weight at block 32)
    report = quantize_model(copy.deepcopy(model), config.replace(bits_budget=budget), progress=False)
    widths = dict(report.config.layer_bits)
    assert widths[victim] == 8 and widths[producer] == 4


def test_sensitivity_ranks_a_worse_quantization_higher_and_restores_the_model():
    model = tiny_bert()
    names = [n for n, _ in find_targets(model, QuantConfig().skip)]
    before = {n: model.get_submodule(n) for n in names}
    W = {n: linear_weight(before[n]).detach() for n in names}
    low = {n: decompose(W[n], QuantConfig(block_size=32, keep=0.0)) for n in names}
    victim = "bert.encoder.layer.0.attention.output.dense"
    low[victim] = decompose(W[victim], QuantConfig(bits=2, block_size=32, keep=0.0))
    s = group_sensitivity(model, packed_groups(names), low, random_tokens(model, 4, 128, 0), progress=False)
    assert max(s, key=s.get) == (victim,)
    assert all(model.get_submodule(n) is before[n] for n in names)
