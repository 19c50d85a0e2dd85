"""Decode with the KV cache in place: one preallocated buffer per cache tensor, bound as both past and present.

In a plain ONNX Runtime loop each call returns a new present.* of n + 1 positions, a copy of the whole cache
(at 1024 cached tokens of a 0.5 B Llama, 75 MB read and written per token). GroupQueryAttention (the fused graph,
exporters/fused/) appends the new positions in place when its past and present are the same buffer, which is how
onnxruntime-genai's Generator runs it (`past_present_share_buffer`). SharedKVDecoder does the same with I/O
binding: buffers [batch, kv_heads, max_length, head_dim], the valid length carried by the attention mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from svdq_edge.errors import UserError
from svdq_edge.runtime.decode.session import PAST_PREFIX, decoder_feed

PRESENT_PREFIX = "present."


def shares_buffer(folder: str | Path) -> bool:
    """True for folders whose genai_config.json says past and present may share one buffer: our fused graphs and
    onnxruntime-genai's builds, whose attention is GroupQueryAttention (a traced graph concatenates past and new
    into a new present, and has no genai_config.json)."""
    path = Path(folder) / "genai_config.json"
    if not path.is_file():
        return False
    return bool(json.loads(path.read_text())["search"].get("past_present_share_buffer"))


class SharedKVDecoder:
    """Prefill, then one token per step, for batch 1, the cache written in place (up to `max_length` tokens). Only
    for graphs that append in place (see `shares_buffer`): others would return a wrong cache without an error."""

    def __init__(self, session: ort.InferenceSession, max_length: int):
        self.session, self.max_length, self.length = session, max_length, 0
        self.past = {}
        for i in session.get_inputs():
            if i.name.startswith(PAST_PREFIX):
                _, heads, _, dim = i.shape
                dtype = np.float16 if i.type == "tensor(float16)" else np.float32
                self.past[i.name] = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, heads, max_length, dim), dtype))

    def append(self, tokens: np.ndarray) -> np.ndarray:
        """Append tokens int64 [1, n] after self.length cached ones; logits float32 [1, n, vocab]."""
        n = tokens.shape[1]
        if self.length + n > self.max_length:
            raise UserError(f"{self.length + n} tokens exceed the cache's max_length {self.max_length}")
        binding = self.session.io_binding()
        feed = decoder_feed(self.session, tokens, np.ones((1, self.length + n), dtype=np.int64), past={})
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for name, buffer in self.past.items():
            binding.bind_ortvalue_input(name, buffer)
            binding.bind_ortvalue_output(PRESENT_PREFIX + name[len(PAST_PREFIX):], buffer)
        binding.bind_output("logits")
        self.session.run_with_iobinding(binding)
        self.length += n
        return binding.get_outputs()[-1].numpy()

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Logits float32 [1, n, vocab] of a prompt int64 [1, n] from an empty cache, and the state (tokens cached):
        OnnxDecoder's interface, so runtime/decode/generate.py runs either."""
        if attention_mask is not None and not np.all(attention_mask):
            raise UserError("in-place KV decoding takes unpadded prompts (batch 1)")
        self.length = 0
        return self.append(np.asarray(input_ids, dtype=np.int64)), self.length

    def step(self, tokens: np.ndarray, state: int) -> tuple[np.ndarray, int]:
        """Logits float32 [1, vocab] after appending tokens int64 [1] to the `state` tokens cached."""
        self.length = state
        return self.append(np.asarray(tokens, dtype=np.int64).reshape(1, 1))[:, -1], self.length


class InPlaceStep:
    """One timed call in the `.run()` shape runtime.measure.latency.time_interleaved times: the cache is cut back to
    `n_past` tokens (nothing is moved: the next call overwrites the slots after it), then `tokens` are appended."""

    def __init__(self, decoder: SharedKVDecoder, n_past: int, tokens: np.ndarray):
        self.decoder, self.n_past, self.tokens = decoder, n_past, tokens

    def run(self, _outputs=None, _feed=None) -> None:
        self.decoder.length = self.n_past
        self.decoder.append(self.tokens)


class InPlaceTimer:
    """A decoder of runtime/decode/latency.py's `step(prompt, phase)` protocol that decodes in place."""

    def __init__(self, session: ort.InferenceSession, max_length: int):
        self.decoder = SharedKVDecoder(session, max_length)

    def step(self, prompt: np.ndarray, phase: str) -> InPlaceStep:
        """"prefill" evaluates `prompt` int64 [1, n] from an empty cache; "decode" caches it once, then each call
        appends one more token after it."""
        if phase == "prefill":
            return InPlaceStep(self.decoder, 0, prompt)
        self.decoder.prefill(prompt)
        return InPlaceStep(self.decoder, prompt.shape[1], prompt[:, -1:])
