"""concat_rows: stacking mixed weights along N is exact for every correction structure."""

import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.quant.concat import ConcatError, can_concat, concat_rows
from svdq_edge.quant.decompose import decompose


def _weights(structure: str, shapes=((64, 96), (32, 96), (48, 96)), **cfg):
    g = torch.Generator().manual_seed(0)
    config = QuantConfig(**({"block_size": 32, "keep": 0.05, "structure": structure} | cfg))
    return [decompose(torch.randn(n, k, generator=g), config) for n, k in shapes]


@pytest.mark.parametrize("structure", ["channel", "lowrank", "element"])
def test_concatenated_weight_dequantizes_to_the_stacked_weights(structure):
    parts = _weights(structure)
    merged = concat_rows(parts)
    assert merged.shape == (144, 96) and merged.structure == parts[0].structure
    assert torch.equal(merged.dequantize(), torch.cat([w.dequantize() for w in parts]))


def test_channel_union_pads_with_zeros():
    parts = _weights("channel")
    merged = concat_rows(parts)
    union = torch.unique(torch.cat([w.correction.channels for w in parts]))
    assert torch.equal(merged.correction.channels, union)
    assert merged.correction.values.shape == (144, union.numel())


def test_no_correction_and_3_bit_codes():
    parts = _weights("channel", keep=0.0, bits=3)
    assert torch.equal(concat_rows(parts).dequantize(), torch.cat([w.dequantize() for w in parts]))


def test_mismatched_weights_are_refused():
    a = _weights("channel", shapes=((16, 96),))[0]
    b = _weights("lowrank", shapes=((16, 96),))[0]
    c = _weights("channel", shapes=((16, 64),))[0]
    assert not can_concat([a, b]) and not can_concat([a, c])
    with pytest.raises(ConcatError):
        concat_rows([a, c])
