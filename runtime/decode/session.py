"""Run a KV-cache decoder graph under ONNX Runtime: feeds, prefill and decode steps.

Both layouts run here: the traced one (exporters/traced/decoder.py, with position_ids) and the fused one
(exporters/fused/, positions from the attention mask). Each call's present.* becomes the next past.*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from svdq_edge.errors import UserError

PAST_PREFIX = "past_key_values."


def is_decoder(session: ort.InferenceSession) -> bool:
    return any(i.name.startswith(PAST_PREFIX) for i in session.get_inputs())


def position_ids(attention_mask: np.ndarray, new: int) -> np.ndarray:
    """int64 [batch, new]: positions of the last `new` tokens, counting only attended (non-padding) tokens."""
    pos = np.cumsum(attention_mask, axis=1) - 1
    return np.clip(pos[:, -new:], 0, None).astype(np.int64)


def empty_past(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    """Zero-length past tensors [batch, kv_heads, 0, head_dim] for every past input (a prompt's first call)."""
    out = {}
    for i in session.get_inputs():
        if i.name.startswith(PAST_PREFIX):
            _, heads, _, dim = i.shape  # [batch, kv_heads, past_sequence, head_dim]; heads and dim are fixed
            out[i.name] = np.zeros((batch, heads, 0, dim), dtype=np.float32)
    return out


def decoder_feed(session: ort.InferenceSession, input_ids: np.ndarray, attention_mask: np.ndarray,
                 past: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The full feed of a decoder call: `attention_mask` covers past + new tokens; no past = a fresh prompt."""
    ids = np.asarray(input_ids, dtype=np.int64)
    mask = np.asarray(attention_mask, dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if any(i.name == "position_ids" for i in session.get_inputs()):  # the fused graph derives them from the mask
        feed["position_ids"] = position_ids(mask, ids.shape[1])
    feed.update(past if past is not None else empty_past(session, ids.shape[0]))
    return feed


@dataclass
class DecoderState:
    """What a decode step needs from the previous call: the cache (as the next call's past) and the mask."""

    past: dict[str, np.ndarray]
    attention_mask: np.ndarray  # int64 [batch, tokens so far]


class OnnxDecoder:
    """Prefill a prompt, then extend it one token at a time, carrying present.* into past_key_values.*."""

    def __init__(self, session: ort.InferenceSession):
        if not is_decoder(session):
            raise UserError("this ONNX model has no past_key_values inputs: export a causal LM with svdq-edge export")
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]

    def _run(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        values = self.session.run(None, feed)
        named = dict(zip(self.outputs, values, strict=True))
        past = {PAST_PREFIX + k[len("present."):]: v for k, v in named.items() if k.startswith("present.")}
        return named["logits"], past

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None
                ) -> tuple[np.ndarray, DecoderState]:
        """Logits float32 [batch, seq, vocab] of the prompt and the state after it."""
        mask = np.ones_like(input_ids, dtype=np.int64) if attention_mask is None else attention_mask
        logits, past = self._run(decoder_feed(self.session, input_ids, mask))
        return logits, DecoderState(past, mask.astype(np.int64))

    def extend(self, tokens: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """Logits float32 [batch, n, vocab] after appending `tokens` int64 [batch, n] to the state's sequence (a
        prompt fed in chunks: each call's logits are n positions, not the whole prompt's)."""
        mask = np.concatenate([state.attention_mask, np.ones(tokens.shape, dtype=np.int64)], axis=1)
        logits, past = self._run(decoder_feed(self.session, tokens, mask, state.past))
        return logits, DecoderState(past, mask)

    def step(self, tokens: np.ndarray, state: DecoderState) -> tuple[np.ndarray, DecoderState]:
        """Logits float32 [batch, vocab] after appending `tokens` int64 [batch] to the state's sequence."""
        logits, state = self.extend(tokens.reshape(-1, 1), state)
        return logits[:, -1], state
