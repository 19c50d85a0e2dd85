"""Decoder latency under ONNX Runtime: prompt (prefill) time and per-token decode time at a given context length."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from svdq_edge.runtime.decode.session import OnnxDecoder, decoder_feed
from svdq_edge.runtime.measure.latency import time_interleaved


@dataclass(frozen=True)
class DecodeLatency:
    context: int  # tokens already in the cache when the timed token is fed (prefill: the prompt length)
    phase: str  # "prefill" or "decode"
    runs: int
    p50_ms: float
    p90_ms: float

    @property
    def tokens_per_s(self) -> float:
        return (self.context if self.phase == "prefill" else 1) * 1e3 / self.p50_ms

    def to_dict(self) -> dict:
        return asdict(self) | {"tokens_per_s": self.tokens_per_s}


def _prompt(vocab: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(100 if vocab > 1000 else 0, vocab, (1, length), dtype=np.int64)


def decode_feed(session: ort.InferenceSession, vocab: int, context: int) -> dict[str, np.ndarray]:
    """The feed of one decode step with `context` tokens cached (the cache comes from a real prefill)."""
    _, state = OnnxDecoder(session).prefill(_prompt(vocab, context))
    token = _prompt(vocab, 1, seed=1)
    return decoder_feed(session, token, np.ones((1, context + 1), dtype=np.int64), state.past)


def _timed_call(decoder, phase: str, vocab: int, context: int) -> tuple[object, dict | None]:
    """(runner, feed) of one timed call: an ONNX Runtime session and its feed, or a runner that needs none (a
    decoder of another runtime with a `step(prompt, phase)` method, e.g. runtime/decode/llamacpp.py)."""
    if isinstance(decoder, ort.InferenceSession):
        if phase == "prefill":
            return decoder, decoder_feed(decoder, _prompt(vocab, context), np.ones((1, context), dtype=np.int64))
        return decoder, decode_feed(decoder, vocab, context)
    return decoder.step(_prompt(vocab, context), phase), None


def measure_decoders(sessions: list, vocab: int, contexts: tuple[int, ...] = (1, 128),
                     prompt: int = 128, runs: int = 50, prefill_runs: int | None = None,
                     warmup: int = 3) -> list[list[DecodeLatency]]:
    """Per decoder (ONNX Runtime sessions, or another runtime's decoder, see `_timed_call`): prefill of a
    `prompt`-token prompt, then one decode step at each context, timed interleaved across decoders (the same tokens
    for all) so their figures compare like with like. Prefills are timed `prefill_runs` times (default: a fifth
    of `runs`, at least 5)."""
    out: list[list[DecodeLatency]] = [[] for _ in sessions]
    for phase, context in [("prefill", prompt), *(("decode", c) for c in contexts)]:
        calls = [_timed_call(s, phase, vocab, context) for s in sessions]
        runners, feeds = [c[0] for c in calls], [c[1] for c in calls]
        n = (prefill_runs or max(5, runs // 5)) if phase == "prefill" else runs
        for i, t in enumerate(time_interleaved(runners, feeds, warmup=warmup, runs=n)):
            out[i].append(DecodeLatency(context, phase, len(t), 1e3 * float(np.percentile(t, 50)),
                                        1e3 * float(np.percentile(t, 90))))
    return out
