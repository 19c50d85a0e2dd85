"""Synthetic Llama GGUFs (svdq_edge/gguf/synthetic.py): random blocks of the intended spread, shapes that validate,
and a written file that our reader, the transcoder and (extra `llamacpp`) llama.cpp all read as the same model."""

import numpy as np
import pytest

from svdq_edge.errors import UserError
from svdq_edge.ggml import GGMLType
from svdq_edge.gguf.synthetic import (
    PRESET_VOCAB,
    PRESETS,
    Q4_K_MIN_RATIO,
    Q4_K_SPREAD,
    WEIGHT_STD,
    LinearType,
    LlamaShape,
    linear_blocks,
    random_blocks,
)


def _dequantize(raw: np.ndarray, kind: GGMLType) -> np.ndarray:
    import gguf

    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(kind.value))


@pytest.mark.parametrize("linear", list(LinearType))
def test_random_linears_are_centred_with_the_intended_spread(linear):
    raw, kind = linear_blocks(linear, 256, 2048, seed=3)
    W = _dequantize(raw, kind)
    assert W.shape == (256, 2048)
    assert abs(W.mean()) < 0.05 * WEIGHT_STD
    assert W.std() == pytest.approx(WEIGHT_STD, rel=0.05)


def test_q4_k_spread_constant_is_the_measured_one():
    """Q4_K_SPREAD is std(W) / d_max for blocks centred by Q4_K_MIN_RATIO: measured here, not assumed."""
    d = 1e-3
    W = _dequantize(random_blocks(GGMLType.Q4_K, 512, 2048, seed=5, d=d, min_ratio=Q4_K_MIN_RATIO), GGMLType.Q4_K)
    assert W.std() / d == pytest.approx(Q4_K_SPREAD, rel=0.03)


def test_random_blocks_are_reproducible_and_seeded():
    a = random_blocks(GGMLType.Q4_K, 8, 512, seed=1)
    assert np.array_equal(a, random_blocks(GGMLType.Q4_K, 8, 512, seed=1))
    assert not np.array_equal(a, random_blocks(GGMLType.Q4_K, 8, 512, seed=2))


def test_presets_have_the_sizes_they_are_named_after():
    assert PRESETS["0.5b"].parameters(PRESET_VOCAB) == pytest.approx(0.5e9, rel=0.1)
    assert PRESETS["1.5b"].parameters(PRESET_VOCAB) == pytest.approx(1.5e9, rel=0.1)


@pytest.mark.parametrize("bad", [dict(heads=3), dict(kv_heads=3), dict(hidden=320, heads=5, kv_heads=5)])
def test_shapes_that_no_kernel_takes_are_refused(bad):
    with pytest.raises(UserError):
        LlamaShape(**(dict(hidden=256, intermediate=512, layers=1, heads=4, kv_heads=2) | bad))
