"""Perplexity with the standard sliding window (as in the Hugging Face perplexity guide), for any scorer."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor
from tqdm.auto import tqdm

from svdq_edge.errors import UserError
from svdq_edge.model.lm import target_nll
from svdq_edge.runtime.decode.session import decoder_feed

# (window ids int64 [L], n_targets) -> summed NLL of the window's last n_targets tokens
WindowScorer = Callable[[Tensor, int], float]


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens: int  # tokens scored
    windows: int
    max_length: int
    stride: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, n_targets) per window: each window sees up to max_length tokens and scores only the tokens no
    earlier window scored, so every token after the first is scored once, with at least max_length - stride tokens
    of context (except near the start). stride < max_length, so each window's first scored token has context."""
    if not 1 <= stride < max_length:
        raise UserError(f"stride must be in [1, max_length - 1], got {stride} (max_length {max_length})")
    out, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        out.append((begin, end, end - prev_end))
        prev_end = end
        if end == n_tokens:
            break
    return out


def perplexity(score: WindowScorer, ids: Tensor, max_length: int = 1024, stride: int = 512,
               progress: bool = True, desc: str = "perplexity") -> Perplexity:
    """exp(mean NLL) of ids [n] scored window by window."""
    spans = windows(ids.shape[0], max_length, stride)
    total, count = 0.0, 0
    for begin, end, n in tqdm(spans, desc=desc, disable=not progress, leave=False):
        n = min(n, end - begin - 1)
        total += score(ids[begin:end], n)
        count += n
    return Perplexity(math.exp(total / count), total / count, count, len(spans), max_length, stride)


def onnx_window_scorer(session: ort.InferenceSession) -> WindowScorer:
    """A scorer running the KV-cache decoder graph on a whole window with an empty cache."""

    def score(ids: Tensor, n_targets: int) -> float:
        x = ids.numpy()[None].astype(np.int64)
        logits = session.run(["logits"], decoder_feed(session, x, np.ones_like(x)))[0][0]
        return target_nll(torch.from_numpy(logits), ids, n_targets)

    return score
