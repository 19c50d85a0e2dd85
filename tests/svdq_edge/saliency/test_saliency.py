import pytest
import torch

from svdq_edge.saliency import ScoreContext, available, get, register
from svdq_edge.saliency.range_gain import peel_gains
from svdq_edge.saliency.svd import low_rank, resolve_rank, truncated_svd


def test_builtin_methods_are_registered():
    assert {"rtn", "magnitude", "random", "svd", "svd-residual", "range", "proxy"} <= set(available())


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError):
        register("magnitude", "dup")(lambda W, ctx: W)


def test_unknown_method_names_the_choices():
    with pytest.raises(KeyError, match="choose from"):
        get("nope")


def test_svd_score_is_abs_of_rank_r_projection():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(20, 12, generator=g)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    expected = ((U[:, :3] * S[:3]) @ Vh[:3]).abs()
    got = get("svd").fn(W, ScoreContext(rank=3))
    assert torch.allclose(got, expected, atol=1e-5)
    resid = get("svd-residual").fn(W, ScoreContext(rank=3))
    assert torch.allclose(resid, (W - (U[:, :3] * S[:3]) @ Vh[:3]).abs(), atol=1e-5)


def test_randomized_svd_matches_exact_on_a_low_rank_matrix():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(2200, 5, generator=g) @ torch.randn(5, 2000, generator=g)  # > 4M elements: randomized path
    U, S, V = truncated_svd(W, 5)
    assert torch.allclose((U * S) @ V.T, W, atol=1e-3 * W.abs().max())


def test_energy_fraction_rank():
    W = torch.diag(torch.tensor([10.0, 1.0, 0.1, 0.01]))
    assert resolve_rank(W, 0.5) == 1  # 100 / 101.01 of the energy is in the first component
    assert resolve_rank(W, 0.999) == 2
    assert resolve_rank(W, 100) == 4


def test_low_rank_of_rank_r_matrix_is_exact():
    W = torch.outer(torch.arange(1.0, 5.0), torch.arange(1.0, 7.0))
    assert torch.allclose(low_rank(W, 1), W, atol=1e-4)


def test_random_is_seeded_and_rtn_keeps_nothing():
    W = torch.randn(8, 8)
    r = get("random").fn
    assert torch.equal(r(W, ScoreContext(seed=3)), r(W, ScoreContext(seed=3)))
    assert not torch.equal(r(W, ScoreContext(seed=3)), r(W, ScoreContext(seed=4)))
    assert get("rtn").fn(W, ScoreContext()) is None


def test_proxy_scales_magnitude_by_input_scale():
    W = torch.ones(2, 3)
    s = torch.tensor([1.0, 5.0, 2.0])
    assert torch.equal(get("proxy").fn(W, ScoreContext(input_scale=s)), torch.tensor([[1.0, 5, 2], [1, 5, 2]]))


def test_range_peels_the_outlier_that_sets_the_range_first():
    W = torch.zeros(1, 16)
    W[0, :8] = torch.linspace(-1, 1, 8)
    W[0, 11] = 9.0  # far above the rest: removing it shrinks the range 5x
    W[0, 3] = -1.2  # slightly below the rest: removing it buys little
    s = peel_gains(W, block_size=16)
    assert s[0].argmax().item() == 11
    # Exact gain of the first peel: count * range^2 before minus (count - 1) * range^2 after.
    before, after = 9.0 - (-1.2), 1.0 - (-1.2)
    assert s[0, 11].item() == pytest.approx(16 * before**2 - 15 * after**2, rel=1e-5)


def test_range_prefers_the_block_where_removal_pays_most():
    W = torch.randn(1, 64, generator=torch.Generator().manual_seed(0)) * 0.1
    W[0, 5] = 3.0  # block 0: isolated outlier
    W[0, 40] = 0.31  # block 1: a barely larger weight
    s = peel_gains(W, block_size=32)
    assert s[0, 5] > s[0, 40]
