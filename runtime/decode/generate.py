"""Token generation from a KV-cache ONNX decoder: greedy or sampled, one token per step, streamed to a callback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from svdq_edge.errors import UserError
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.decode.shared_kv import SharedKVDecoder


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 = greedy (argmax); otherwise softmax(logits / temperature) restricted to the top_k tokens and
    to the smallest set whose probability reaches top_p, drawn with a seeded generator."""

    temperature: float = 0.0
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")


def next_token(logits: np.ndarray, cfg: SamplingConfig, rng: np.random.Generator) -> int:
    """One token id from logits float32 [vocab]."""
    if cfg.temperature == 0.0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / cfg.temperature
    order = np.argsort(-z)
    if cfg.top_k:
        order = order[: cfg.top_k]
    p = np.exp(z[order] - z[order[0]])
    p /= p.sum()
    if cfg.top_p < 1.0:
        cut = int(np.searchsorted(np.cumsum(p), cfg.top_p)) + 1  # smallest prefix reaching top_p
        order, p = order[:cut], p[:cut] / p[:cut].sum()
    return int(order[rng.choice(len(order), p=p)])


def generate_ids(decoder: OnnxDecoder | SharedKVDecoder, prompt_ids: list[int], max_new_tokens: int,
                 cfg: SamplingConfig | None = None, eos_ids: frozenset[int] = frozenset()) -> Iterator[int]:
    """Yield up to `max_new_tokens` new token ids (stopping after an end-of-sequence id)."""
    if not prompt_ids:
        raise UserError("the prompt encodes to no tokens")
    cfg = cfg or SamplingConfig()
    rng = np.random.default_rng(cfg.seed)
    logits, state = decoder.prefill(np.asarray([prompt_ids], dtype=np.int64))
    last = logits[0, -1]
    for i in range(max_new_tokens):
        tok = next_token(last, cfg, rng)
        yield tok
        if tok in eos_ids or i == max_new_tokens - 1:
            return
        step_logits, state = decoder.step(np.asarray([tok], dtype=np.int64), state)
        last = step_logits[0]


def stream_text(tokenizer, ids: Iterator[int], emit: Callable[[str], None]) -> list[int]:
    """Decode a growing token list and emit only the new text each time (byte-level BPE pieces can need several
    tokens to form a character, so the whole list is decoded and the stable prefix is not repeated)."""
    out: list[int] = []
    shown = ""
    for tok in ids:
        out.append(tok)
        text = tokenizer.decode(out, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            continue
        emit(text[len(shown):])
        shown = text
    return out
