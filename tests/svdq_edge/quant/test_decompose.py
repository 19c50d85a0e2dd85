import pytest
import torch

from svdq_edge.config import ConfigError, QuantConfig
from svdq_edge.quant.decompose import (
    ChannelCorrection,
    ElementCorrection,
    LowRankCorrection,
    budget_rank,
    decompose,
    relative_error,
)


def W_test(N=48, K=200, seed=0):
    W = torch.randn(N, K, generator=torch.Generator().manual_seed(seed))
    W[3, 17] = 12.0
    W[30, 150] = -9.0
    return W


@pytest.mark.parametrize("method", ["magnitude", "svd", "svd-residual", "range", "random"])
def test_element_kept_weights_are_bit_exact_and_budget_is_met(method):
    W = W_test()
    m = decompose(W, QuantConfig(method=method, keep=0.02, block_size=32, structure="element"))
    c = m.correction
    assert isinstance(c, ElementCorrection)
    assert c.values.numel() == round(0.02 * W.numel())
    W_hat = m.dequantize()
    rows, cols = c.rows.long(), c.cols.long()
    assert torch.equal(W_hat[rows, cols], W[rows, cols])
    flat = rows * W.shape[1] + cols
    assert torch.equal(flat, flat.sort().values)  # row-major order


def test_magnitude_keeps_planted_outliers_and_beats_rtn():
    W = W_test()
    cfg = QuantConfig(method="magnitude", keep=0.01, block_size=32, structure="element")
    m = decompose(W, cfg)
    kept = set(zip(m.correction.rows.tolist(), m.correction.cols.tolist(), strict=True))
    assert {(3, 17), (30, 150)} <= kept
    rtn = decompose(W, cfg.replace(method="rtn"))
    assert rtn.correction is None
    assert relative_error(W, m.dequantize()) < relative_error(W, rtn.dequantize())


def test_channel_keeps_whole_columns_exactly():
    W = W_test()
    W[:, 42] *= 20  # an outlier input channel
    m = decompose(W, QuantConfig(method="magnitude", keep=0.01, structure="channel", block_size=32))
    c = m.correction
    assert isinstance(c, ChannelCorrection)
    assert c.channels.numel() == 2 and 42 in c.channels.tolist()  # round(0.01 * 200) channels


def test_channel_budget_and_exactness():
    W = W_test()
    W[:, 42] *= 20
    m = decompose(W, QuantConfig(method="magnitude", keep=0.02, structure="channel", block_size=32))
    c = m.correction
    assert c.channels.numel() == 4 and 42 in c.channels.tolist()
    assert torch.equal(m.dequantize()[:, c.channels], W[:, c.channels])


def test_lowrank_branch_takes_the_low_rank_part():
    g = torch.Generator().manual_seed(0)
    N, K = 64, 96
    r = budget_rank(N, K, 0.05)
    assert r == int(0.05 * N * K / (N + K))
    W = torch.randn(N, r, generator=g) @ torch.randn(r, K, generator=g) * 3 + 0.01 * torch.randn(N, K, generator=g)
    m = decompose(W, QuantConfig(keep=0.05, structure="lowrank", block_size=32))
    assert isinstance(m.correction, LowRankCorrection)
    assert m.correction.L.shape == (N, r) and m.correction.R.shape == (r, K)
    rtn = decompose(W, QuantConfig(method="rtn", keep=0.05, block_size=32))
    assert relative_error(W, m.dequantize()) < relative_error(W, rtn.dequantize()) / 10


def test_bits_per_weight_counts_codes_scales_zeros_and_correction():
    W = torch.randn(64, 256)
    rtn = decompose(W, QuantConfig(method="rtn", bits=4, block_size=128))
    # 4 bits of code + (32-bit scale + 4-bit zero) per 128 weights.
    assert rtn.bits_per_weight() == pytest.approx(4 + (32 + 4) / 128)
    m = decompose(W, QuantConfig(method="magnitude", bits=4, block_size=128, keep=0.01, structure="element"))
    nnz = m.correction.values.numel()
    assert m.bits_per_weight() == pytest.approx(4 + 36 / 128 + nnz * 96 / W.numel())


def test_nan_weight_is_rejected():
    W = torch.randn(8, 32)
    W[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        decompose(W, QuantConfig(block_size=16))


@pytest.mark.parametrize("kwargs, field", [
    ({"bits": 5}, "bits"), ({"block_size": 100}, "block_size"), ({"block_size": 512}, "block_size"),
    ({"keep": 0.6}, "keep"), ({"keep": -0.1}, "keep"), ({"method": "nope"}, "method"),
    ({"structure": "diagonal"}, "structure"), ({"rank": 0}, "rank"), ({"rank": 1.5}, "rank"),
])
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        QuantConfig(**kwargs)


def test_config_json_round_trip():
    c = QuantConfig(bits=3, block_size=64, keep=0.05, structure="channel", rank=0.9, method="svd", skip=["head"])
    assert QuantConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown config keys"):
        QuantConfig.from_dict({**c.to_dict(), "colour": "red"})
