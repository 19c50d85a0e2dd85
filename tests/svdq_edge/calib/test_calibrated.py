"""Calibrated methods on small problems with known answers: statistics, GPTQ, SpQR sensitivity, AWQ, ROSAQ."""

import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.decompose import LowRankCorrection, decompose
from svdq_edge.quant.gptq import gptq_quantize
from svdq_edge.saliency import ScoreContext, get
from svdq_edge.saliency.awq import output_loss, search_scale
from svdq_edge.saliency.rosaq import principal_input_basis
from svdq_edge.saliency.spqr import obs_sensitivity


def correlated_inputs(rows=512, K=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, K, generator=g) / K**0.5 + torch.eye(K)
    return torch.randn(rows, K, generator=g) @ A


def test_gptq_equals_rtn_when_inputs_are_uncorrelated():
    # H = I: the inverse Hessian is diagonal, so no error is fed forward and GPTQ is round-to-nearest.
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    q, _ = gptq_quantize(W, torch.eye(64), bits=4, block_size=32, damp=0.0)
    ref = quantize_blockwise(W, 4, 32)
    assert torch.equal(q.codes, ref.codes) and torch.equal(q.zero, ref.zero)
    torch.testing.assert_close(q.scale, ref.scale)


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_lowers_output_error_on_correlated_inputs(bits):
    X = correlated_inputs()
    H = X.T @ X / X.shape[0]
    W = torch.randn(16, 32, generator=torch.Generator().manual_seed(bits))
    rtn = dequantize_blockwise(quantize_blockwise(W, bits, 16))
    q, _ = gptq_quantize(W, H, bits=bits, block_size=16)
    gptq = dequantize_blockwise(q)
    assert output_loss(W, gptq, H) < 0.8 * output_loss(W, rtn, H)


def test_gptq_outliers_are_kept_at_their_updated_value():
    X = correlated_inputs(K=16)
    H = X.T @ X / X.shape[0]
    W = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    W[1, 5], W[2, 11] = 8.0, -7.0  # planted outliers that set their blocks' ranges
    mask = torch.zeros(4, 16, dtype=torch.bool)
    mask[1, 5] = mask[2, 11] = True
    q, W_upd = gptq_quantize(W, H, bits=4, block_size=16, exclude=mask)
    deq = dequantize_blockwise(q)
    assert (deq[mask] == 0).all()  # excluded positions are coded as the zero point
    assert not torch.allclose(W_upd[mask], W[mask])  # error feedback from earlier columns moved them
    with_outliers = output_loss(W, deq + torch.where(mask, W_upd, torch.zeros_like(W)), H)
    assert with_outliers < output_loss(W, dequantize_blockwise(gptq_quantize(W, H, 4, 16)[0]), H)


def test_spqr_sensitivity_matches_brute_force_least_squares():
    # Fix w_ij to a target, re-fit the rest of row i to the original outputs by least squares, measure the loss.
    g = torch.Generator().manual_seed(3)
    X = torch.randn(200, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    W = torch.randn(3, 6, generator=g, dtype=torch.float64)
    T = W + torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.3  # arbitrary targets
    H = X.T @ X / X.shape[0]
    got = obs_sensitivity(W, H, T.float(), damp=0.0)
    for i in range(3):
        for j in range(6):
            rest = [c for c in range(6) if c != j]
            d_j = T[i, j] - W[i, j]
            # min over d_rest of ||X[:, rest] d_rest + X[:, j] d_j||^2 / n
            sol = torch.linalg.lstsq(X[:, rest], -X[:, j : j + 1] * d_j).solution
            brute = ((X[:, rest] @ sol + X[:, j : j + 1] * d_j) ** 2).sum() / X.shape[0]
            assert got[i, j].item() == pytest.approx(brute.item(), rel=1e-4)


def test_awq_selects_the_planted_channel_with_large_activations():
    W = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    x_mean = torch.ones(64)
    x_mean[17] = 50.0  # one input channel carries activations 50x larger; its weights are ordinary
    cfg = QuantConfig(method="awq", bits=4, block_size=32, keep=1 / 64, structure="channel")
    mixed = decompose(W, cfg, ScoreContext(input_scale=x_mean))
    assert mixed.correction.channels.tolist() == [17]
    assert decompose(W, cfg.replace(method="magnitude")).correction.channels.tolist() != [17]


def test_awq_scale_search_prefers_scaling_when_one_channel_dominates():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1024, 64, generator=g)
    X[:, 5] *= 30.0
    H = X.T @ X / X.shape[0]
    Ws = [torch.randn(16, 64, generator=g), torch.randn(8, 64, generator=g)]
    quant = lambda W, s: dequantize_blockwise(quantize_blockwise(W, 3, 32))  # noqa: E731
    found = search_scale(Ws, X.abs().mean(0), H, quant)
    assert found.alpha > 0
    assert found.loss < 0.9 * found.loss_unscaled
    # The loss it reports is the real output error of the scaled-then-unscaled quantized weights.
    direct = sum(output_loss(W, quant(W * found.s, found.s) / found.s, H) for W in Ws)
    assert found.loss == pytest.approx(direct, rel=1e-6)


def test_rosaq_basis_recovers_the_planted_input_subspace():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(48, 3, generator=g))
    X = torch.randn(400, 3, generator=g) @ (Q.T * torch.tensor([[5.0], [3.0], [2.0]]))
    X = X + 0.01 * torch.randn(400, 48, generator=g)
    H = X.T @ X / X.shape[0]
    R = principal_input_basis(H, 3)
    torch.testing.assert_close(R @ R.T, Q @ Q.T, atol=1e-3, rtol=0)
    W = torch.randn(24, 48, generator=g)
    cfg = QuantConfig(method="rosaq", bits=4, block_size=16, keep=0.1, structure="channel")  # rosaq forces lowrank
    mixed = decompose(W, cfg, ScoreContext(hessian=H))
    assert isinstance(mixed.correction, LowRankCorrection)
    r = mixed.correction.R.shape[0]
    assert r == int(0.1 * 24 * 48 / (24 + 48))
    # The FP32 branch is W's action on the top-r input directions, exactly.
    R_r = principal_input_basis(H, r)
    torch.testing.assert_close(mixed.correction.L @ mixed.correction.R, W @ R_r @ R_r.T, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["awq", "spqr", "gptq", "rosaq"])
def test_calibrated_methods_refuse_to_run_without_statistics(method):
    with pytest.raises(ValueError, match="calibration"):
        decompose(torch.randn(8, 32), QuantConfig(method=method, block_size=16), ScoreContext())


def test_registry_flags():
    assert get("gptq").error_feedback and not get("gptq").keeps
    assert get("spqr").error_feedback and get("spqr").keeps
    assert get("rosaq").basis and get("awq").scale_search
    assert all(get(m).needs_calibration for m in ("awq", "spqr", "gptq", "rosaq"))
    assert not any(get(m).needs_calibration for m in ("rtn", "svd", "range", "magnitude"))
