"""GGML unpacking against the gguf package's own dequantizers, and the MatMulNBits layout of the codes."""

import gguf  # a dev dependency: its absence is an error, never a skip
import numpy as np
import pytest
import torch

from svdq_edge.ggml import BLOCK_WEIGHTS, UNPACKERS, GGMLFormatError, GGMLType, dequantize, unpack
from svdq_edge.ggml.layout import permute_rows, rope_unpermute_index, to_mixed, to_table
from svdq_edge.quant.packing import unpack as unpack_packed
from tests.ggml_files import random_blocks

BLOCK_TYPES = sorted(UNPACKERS, key=lambda t: t.value)


def reference(raw: np.ndarray, kind: GGMLType) -> np.ndarray:
    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(kind.value))


@pytest.mark.parametrize("kind", BLOCK_TYPES, ids=lambda t: t.name)
def test_unpack_is_bit_exact_against_gguf(kind):
    raw = random_blocks(kind, rows=7, K=3 * BLOCK_WEIGHTS[kind], seed=kind.value)
    ours = unpack(torch.from_numpy(raw), kind).dequantize().numpy()
    assert np.array_equal(ours, reference(raw, kind))


@pytest.mark.parametrize("kind", BLOCK_TYPES, ids=lambda t: t.name)
def test_unpack_covers_every_code_and_field(kind):
    """Random bytes everywhere (any 6-bit scale, sign, high bit), halves kept finite: still bit-exact."""
    raw = np.random.default_rng(5).integers(0, 256, (4, 2 * gguf.GGML_QUANT_SIZES[
        gguf.GGMLQuantizationType(kind.value)][1]), dtype=np.uint8)
    ref = reference(raw, kind)
    ours = unpack(torch.from_numpy(raw), kind)
    finite = np.isfinite(ref)
    assert finite.mean() > 0.5
    assert np.array_equal(ours.dequantize().numpy()[finite], ref[finite])
    assert int(ours.codes.max()) <= 2**ours.bits - 1


@pytest.mark.parametrize("kind", [GGMLType.F32, GGMLType.F16, GGMLType.BF16], ids=lambda t: t.name)
def test_float_types_read_exactly(kind):
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    raw = gguf.quants.quantize(x, gguf.GGMLQuantizationType(kind.value)) if kind is GGMLType.BF16 else \
        x.astype(np.float16 if kind is GGMLType.F16 else np.float32)
    raw_u8 = torch.from_numpy(np.ascontiguousarray(raw).view(np.uint8).reshape(3, -1))
    assert np.array_equal(dequantize(raw_u8, kind).numpy(), reference(np.ascontiguousarray(raw).view(np.uint8)
                                                                      .reshape(3, -1), kind))


@pytest.mark.parametrize("kind", BLOCK_TYPES, ids=lambda t: t.name)
def test_matmulnbits_layout_reproduces_ggml_weights(kind):
    """Shifted codes are exact; offsets with the zero-point shift folded in differ by float32 rounding only."""
    raw = random_blocks(kind, rows=6, K=2 * BLOCK_WEIGHTS[kind], seed=1)
    c = unpack(torch.from_numpy(raw), kind)
    mixed = to_mixed(c)
    W = c.dequantize()
    p = mixed.packed
    assert p.block_size == c.group and p.fmt.value in (2, 4, 8)
    assert (unpack_packed(p).zero == 2 ** (p.fmt.value - 1)).all()  # MatMulNBits' default: no zero-point tensor
    ulp = c.scale.abs().repeat_interleave(c.group, 1) * 2**-20
    assert ((mixed.dequantize() - W).abs() <= ulp).all()
    folded = c.offset is not None and 2 ** (p.fmt.value - 1) - c.zero + 2**c.bits - 1 > 2**p.fmt.value - 1
    if not folded:
        assert torch.equal(mixed.dequantize(), W)
    assert (mixed.structure is None) == (c.offset is None)
    assert (to_table(c) is None) == (c.offset is not None)


def test_rope_unpermute_matches_transformers():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    W = np.arange(24 * 3, dtype=np.float32).reshape(24, 3)
    want = LlamaTensorProcessor()._reverse_permute_weights(W, 4, 2)  # 2 kv heads: 24 rows, head_dim 12
    assert np.array_equal(W[rope_unpermute_index(24, 2).numpy()], want)


def test_permute_rows_moves_codes_scales_and_offsets_together():
    raw = random_blocks(GGMLType.Q4_1, rows=8, K=64, seed=2)
    c = unpack(torch.from_numpy(raw), GGMLType.Q4_1)
    idx = torch.tensor([3, 1, 0, 2, 7, 6, 5, 4])
    assert torch.equal(permute_rows(c, idx).dequantize(), c.dequantize()[idx])


def test_bad_inputs_are_named():
    with pytest.raises(GGMLFormatError, match="20-byte blocks"):
        unpack(torch.zeros(2, 30, dtype=torch.uint8), GGMLType.Q4_1)
    with pytest.raises(GGMLFormatError, match="not supported"):
        GGMLType.of(20, "blk.0.attn_q.weight")  # IQ4_NL
