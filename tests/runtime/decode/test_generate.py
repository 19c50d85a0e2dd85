"""Sampling, streaming and perplexity bookkeeping (no model needed)."""

import math

import numpy as np
import pytest
import torch

from svdq_edge.errors import UserError
from svdq_edge.model.lm import target_nll
from svdq_edge.runtime.decode.generate import SamplingConfig, next_token, stream_text
from svdq_edge.runtime.decode.perplexity import perplexity, windows


def test_greedy_and_degenerate_sampling_pick_the_argmax():
    logits = np.array([0.1, 2.0, 1.9, -1.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert next_token(logits, SamplingConfig(), rng) == 1
    assert all(next_token(logits, SamplingConfig(temperature=5.0, top_k=1), rng) == 1 for _ in range(20))
    assert all(next_token(logits, SamplingConfig(temperature=1.0, top_p=0.01), rng) == 1 for _ in range(20))


def test_sampling_respects_top_k_and_is_seeded():
    logits = np.array([3.0, 2.9, 2.8, -5.0, 2.7], dtype=np.float32)
    cfg = SamplingConfig(temperature=10.0, top_k=2, seed=3)
    draws = [next_token(logits, cfg, np.random.default_rng(i)) for i in range(200)]
    assert set(draws) == {0, 1}  # high temperature: both survivors drawn, never anything else
    again = [next_token(logits, cfg, np.random.default_rng(i)) for i in range(200)]
    assert draws == again


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5)])
def test_sampling_config_rejects_bad_values(bad):
    with pytest.raises(UserError):
        SamplingConfig(**bad)


class PieceTokenizer:
    """Token i decodes to PIECES[i]; token 2 and 3 together form one character (an incomplete UTF-8 sequence)."""

    def decode(self, ids, skip_special_tokens=True):
        raw = b"".join({0: b"Hi", 1: b" there", 2: b"\xc3", 3: b"\xa9"}[i] for i in ids)
        return raw.decode("utf-8", errors="replace")


def test_stream_text_emits_each_piece_once_and_waits_for_whole_characters():
    pieces = []
    ids = stream_text(PieceTokenizer(), iter([0, 1, 2, 3]), pieces.append)
    assert ids == [0, 1, 2, 3]
    assert pieces == ["Hi", " there", "é"]


@pytest.mark.parametrize("n,max_length,stride", [(10, 4, 2), (1000, 128, 64), (129, 128, 127), (5, 16, 8)])
def test_windows_score_every_token_after_the_first_exactly_once(n, max_length, stride):
    spans = windows(n, max_length, stride)
    scored = []
    for begin, end, k in spans:
        k = min(k, end - begin - 1)
        assert end - begin <= max_length
        scored += list(range(end - k, end))
    assert scored == list(range(1, n))


def test_windows_refuse_a_stride_that_leaves_tokens_without_context():
    with pytest.raises(UserError, match="stride"):
        windows(129, 128, 128)


def test_target_nll_is_cross_entropy_and_uniform_perplexity_is_vocab():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(6, 11, generator=g), torch.randint(0, 11, (6,), generator=g)
    ce = torch.nn.functional.cross_entropy(logits[:-1].double(), ids[1:], reduction="sum")
    assert target_nll(logits, ids, 99) == pytest.approx(float(ce))
    uniform = perplexity(lambda w, k: target_nll(torch.zeros(len(w), 50), w, k), torch.arange(300) % 50, 64, 32,
                         progress=False)
    assert uniform.ppl == pytest.approx(50.0) and uniform.tokens == 299
    assert uniform.nll == pytest.approx(math.log(50))
