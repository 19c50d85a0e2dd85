"""Per-tensor int8 weight scales: shared ranges, the choice rule, the config, and what quantize_model records."""

import pytest
import torch

from svdq_edge.config import ConfigError, Int8Scale, QuantConfig
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.decompose import decompose
from svdq_edge.quant.int8_scale import choose_scales, group_absmax
from tests.conftest import tiny_bert

INT8 = QuantConfig(bits=8, kernel="int8", method="rtn", keep=0.0, embedding_bits=None)


def test_a_shared_absmax_gives_one_scale_and_round_trips():
    W = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    a = 1.5 * float(W.abs().max())
    q = quantize_blockwise(W, 8, 40, symmetric=True, absmax=a)
    assert torch.equal(q.scale, torch.full_like(q.scale, a / 127))
    W_hat = dequantize_blockwise(q)
    assert torch.equal(W_hat, (q.codes.float() - 128) * (a / 127))  # dequantize is the codes times the one scale
    assert (W_hat - W).abs().max() <= 0.5 * a / 127 + 1e-6
    with pytest.raises(ValueError):
        quantize_blockwise(W, 8, 40, symmetric=True, absmax=float(W.abs().max()) / 2)  # codes would saturate
    with pytest.raises(ValueError):
        quantize_blockwise(W, 8, 40, symmetric=False, absmax=a)


def test_tensor_scale_decomposes_with_one_scale_and_costs_rows_with_small_ranges():
    W = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    W[0] *= 40.0  # one output channel with a far larger range
    column = decompose(W, INT8)
    tensor = decompose(W, INT8.replace(int8_scale="tensor"))
    assert tensor.packed.scales.unique().numel() == 1 and column.packed.scales.unique().numel() == 8
    err = lambda m: (m.dequantize() - W)[1:].abs().max()  # noqa: E731
    assert err(tensor) > 10 * err(column)
    with pytest.raises(ValueError):
        decompose(W, INT8.replace(int8_scale="auto"))  # auto is resolved before decomposing


def test_choose_scales_takes_the_cheapest_groups_within_the_growth():
    column = {("a",): 1.0, ("b",): 1.0, ("q", "k"): 2.0}
    tensor = {("a",): 2.0, ("b",): 9.0, ("q", "k"): 3.5}
    # all-column total 4; growth 2 allows 8: a (+1) then q,k (+1.5) fit, b (+8) does not
    got = choose_scales(column, tensor, growth=2.0)
    assert got == {"a": Int8Scale.TENSOR, "q": Int8Scale.TENSOR, "k": Int8Scale.TENSOR, "b": Int8Scale.COLUMN}
    assert set(choose_scales(column, tensor, growth=1.0).values()) == {Int8Scale.COLUMN}
    assert set(choose_scales(column, tensor, growth=10.0).values()) == {Int8Scale.TENSOR}


def test_group_absmax_is_shared_by_siblings():
    weights = {"q": torch.tensor([[1.0, -5.0]]), "k": torch.tensor([[2.0]]), "o": torch.tensor([[0.5]])}
    assert group_absmax([["q", "k"], ["o"]], weights.__getitem__) == {"q": 5.0, "k": 5.0, "o": 0.5}


def test_config_checks_and_resolves_per_layer():
    with pytest.raises(ConfigError):
        QuantConfig(int8_scale="tensor")  # the MatMulNBits kernel has no such scale
    with pytest.raises(ConfigError):
        INT8.replace(int8_scale="rows")
    with pytest.raises(ConfigError):
        INT8.replace(layer_int8_scale={"a": "auto"})
    c = INT8.replace(int8_scale="auto", layer_int8_scale={"a": "tensor", "b": "column"})
    assert c.for_layer("a").int8_scale is Int8Scale.TENSOR and c.for_layer("b").int8_scale is Int8Scale.COLUMN
    assert QuantConfig.from_dict(c.to_dict()) == c
    mixed = QuantConfig(bits_budget=6.0, kernel="int8", int8_scale="tensor", layer_bits={"a": 4, "b": 8})
    assert mixed.for_layer("a").int8_scale is Int8Scale.COLUMN  # a 4-bit layer runs on MatMulNBits
    assert mixed.for_layer("b").int8_scale is Int8Scale.TENSOR


def test_auto_records_a_choice_that_rebuilds_and_shares_scales_in_packed_groups():
    model = tiny_bert()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        layer.output.dense.weight[3] *= 50.0  # an FFN output channel far louder than the rest, as in BERT
    report = quantize_model(model, INT8.replace(int8_scale="auto"), progress=False)
    chosen = dict(report.config.layer_int8_scale)
    assert chosen["bert.encoder.layer.0.output.dense"] == "column"
    assert "tensor" in chosen.values()
    mixed = _mixed(model)
    for i in range(len(model.bert.encoder.layer)):  # q/k/v are one matmul in the fused graph: one choice, one scale
        names = [f"bert.encoder.layer.{i}.attention.self.{p}" for p in ("query", "key", "value")]
        assert len({chosen[n] for n in names}) == 1
        if chosen[names[0]] == "tensor":
            assert len({float(s) for n in names for s in mixed[n].packed.scales.unique()}) == 1
    again = tiny_bert()
    with torch.no_grad():
        again.bert.encoder.layer[0].output.dense.weight[3] *= 50.0
    quantize_model(again, report.config, progress=False)  # the saved choice rebuilds the same codes
    for n, m in _mixed(again).items():
        assert torch.equal(m.packed.B, _mixed(model)[n].packed.B), n


def _mixed(model) -> dict:
    from svdq_edge.model.modules import QuantLinear

    return {n: m.mixed for n, m in model.named_modules() if isinstance(m, QuantLinear)}


def test_a_bits_budget_with_tensor_scales_requantizes_the_8_bit_layers():
    """The budget is costed at per-column scales; its 8-bit layers must then come out with the tensor scale."""
    model = tiny_bert()
    config = QuantConfig(bits_budget=6.0, kernel="int8", keep=0.0, method="rtn", block_size=32, embedding_bits=None,
                         int8_scale="tensor")
    report = quantize_model(model, config, progress=False)
    widths = dict(report.config.layer_bits)
    assert set(widths.values()) == {4, 8}
    for name, m in _mixed(model).items():
        n_scales = m.packed.scales.unique().numel()
        assert (n_scales == 1) if widths[name] == 8 else (m.packed.bits == 4 and n_scales > 1), name
