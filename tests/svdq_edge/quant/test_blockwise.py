import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.packing import QuantFormat, pack, unpack

BITS = [2, 3, 4, 8]
BLOCKS = [16, 32, 64, 128, 256]


def rand_w(N, K, seed=0):
    return torch.randn(N, K, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 9), K=st.integers(1, 300), bits=st.sampled_from(BITS), bs=st.sampled_from(BLOCKS),
       symmetric=st.booleans(), clip=st.booleans(), seed=st.integers(0, 10_000))
def test_pack_unpack_round_trip_is_exact(N, K, bits, bs, symmetric, clip, seed):
    q = quantize_blockwise(rand_w(N, K, seed), bits, bs, symmetric=symmetric, clip=clip)
    p = pack(q)
    r = unpack(p)
    assert torch.equal(r.codes, q.codes)
    assert torch.equal(r.scale, q.scale)
    assert torch.equal(r.zero, q.zero)
    assert torch.equal(dequantize_blockwise(r), dequantize_blockwise(q))
    # Shapes of the MatMulNBits layout.
    fmt = QuantFormat.for_bits(bits)
    nb = -(-K // bs)
    assert p.B.shape == (N, nb, bs * fmt.value // 8) and p.B.dtype == torch.uint8
    assert p.scales.shape == (N, nb) and p.scales.dtype == torch.float32
    assert p.zero_points.shape == (N, -(-nb * fmt.value // 8))


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 6), K=st.integers(1, 260), bits=st.sampled_from(BITS), bs=st.sampled_from(BLOCKS),
       symmetric=st.booleans(), seed=st.integers(0, 10_000))
def test_codes_in_range_and_error_bounded_by_one_step(N, K, bits, bs, symmetric, seed):
    W = rand_w(N, K, seed)
    q = quantize_blockwise(W, bits, bs, symmetric=symmetric)
    assert int(q.codes.max()) <= 2**bits - 1 and int(q.zero.max()) <= 2**bits - 1
    err = (dequantize_blockwise(q) - W).abs()
    step = q.scale.repeat_interleave(bs, dim=1)[:, :K]
    assert bool((err <= step * 1.0001 + 1e-7).all())


def test_four_bit_packing_puts_earlier_k_in_low_nibble():
    W = torch.zeros(1, 16)
    q = quantize_blockwise(W, 4, 16)
    codes = torch.arange(16, dtype=torch.uint8).reshape(1, 16)
    q2 = type(q)(codes=codes, scale=q.scale, zero=torch.tensor([[3]], dtype=torch.uint8), K=16, bits=4,
                 block_size=16)
    p = pack(q2)
    assert p.B[0, 0, 0].item() == 0x10 and p.B[0, 0, 1].item() == 0x32
    assert p.zero_points[0, 0].item() == 0x03


def test_two_bit_packing_order():
    codes = torch.tensor([[1, 2, 3, 0] * 4], dtype=torch.uint8)
    q = quantize_blockwise(torch.zeros(1, 16), 2, 16)
    p = pack(type(q)(codes=codes, scale=q.scale, zero=q.zero, K=16, bits=2, block_size=16))
    assert p.B[0, 0, 0].item() == 1 | (2 << 2) | (3 << 4)


def test_excluded_and_padded_positions_dequantize_to_zero_and_leave_the_range():
    W = torch.randn(4, 100)
    W[1, 7] = 50.0  # an outlier that would otherwise blow up its block's step
    mask = torch.zeros_like(W, dtype=torch.bool)
    mask[1, 7] = True
    q = quantize_blockwise(W, 4, 32, exclude=mask)
    W_hat = dequantize_blockwise(q)
    assert W_hat[1, 7].item() == 0.0
    plain = quantize_blockwise(W, 4, 32)
    assert q.scale[1, 0] < plain.scale[1, 0] / 5
    assert W_hat.shape == (4, 100)


def test_fully_excluded_block_is_all_zero_with_finite_scale():
    W = torch.randn(2, 32)
    q = quantize_blockwise(W, 4, 16, exclude=torch.ones_like(W, dtype=torch.bool))
    assert torch.isfinite(q.scale).all()
    assert dequantize_blockwise(q).abs().max() == 0


def test_clip_search_never_increases_block_error():
    W = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) ** 3  # heavy tails: clipping should help
    for bits in BITS:
        e0 = (dequantize_blockwise(quantize_blockwise(W, bits, 64)) - W).pow(2).sum()
        e1 = (dequantize_blockwise(quantize_blockwise(W, bits, 64, clip=True)) - W).pow(2).sum()
        assert e1 <= e0
        if bits <= 4:  # at 8 bits the rounding error is too small for clipping to pay
            assert e1 < e0


@pytest.mark.parametrize("bits", BITS)
def test_constant_rows_are_exact(bits):
    W = torch.full((3, 48), 0.25)
    q = quantize_blockwise(W, bits, 16)
    assert torch.allclose(dequantize_blockwise(q), W, atol=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_split_halves_is_exact(symmetric):
    """8-bit codes as two 4-bit halves along K: [x, x] @ W'^T equals x @ W^T, any zero points."""
    from svdq_edge.quant.packing import split_halves

    W = torch.randn(24, 64)
    p = pack(quantize_blockwise(W, 8, 32, symmetric=symmetric))
    halves = split_halves(p)
    assert (halves.bits, halves.K, halves.N) == (4, 128, 24)
    W8 = dequantize_blockwise(unpack(p))
    W4 = dequantize_blockwise(unpack(halves))
    assert torch.allclose(W4[:, :64] + W4[:, 64:], W8, rtol=0, atol=1e-6 * W8.abs().max())
    with pytest.raises(ValueError, match="8-bit"):
        split_halves(halves)
