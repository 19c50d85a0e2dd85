"""llama.cpp (llama-cpp-python, extra `llamacpp`) on a GGUF file, shaped like our ONNX Runtime decoders so the
decoder benchmark scores and times it in the same run: a perplexity window scorer and timed single-token steps.

Token ids come from the Hugging Face tokenizer of the same GGUF (the vocabularies are the same), so every contender
scores the same tokens.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from svdq_edge.model.lm import target_nll


def llamacpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


@functools.cache
def _quiet_log():
    """A llama.cpp log callback that drops everything: llama.cpp logs its loading steps to stderr whatever
    `verbose` says. Cached, so it lives as long as the process (llama.cpp calls it while freeing contexts)."""
    import llama_cpp

    return llama_cpp.llama_log_callback(lambda level, text, user_data: None)


class LlamaCppStep:
    """One llama.cpp call in the `.run(outputs, feed)` shape runtime.latency.time_interleaved times: the cache is
    cut back to `n_past` tokens, then `tokens` are evaluated (a prefill from an empty cache, or one decode step)."""

    def __init__(self, llm, n_past: int, tokens: list[int]):
        self.llm, self.n_past, self.tokens = llm, n_past, tokens

    def run(self, _outputs=None, _feed=None) -> None:
        self.llm.n_tokens = self.n_past
        self.llm.eval(self.tokens)


class LlamaCppDecoder:
    """A GGUF under llama.cpp on CPU with `threads` threads for both prompt and decode."""

    def __init__(self, gguf: str | Path, threads: int = 2, n_ctx: int = 2048):
        import llama_cpp
        from llama_cpp import Llama

        llama_cpp.llama_log_set(_quiet_log(), ctypes.c_void_p())
        self.path, self.threads, self.n_ctx = Path(gguf), threads, n_ctx
        self.llm = Llama(str(gguf), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=512,
                         verbose=False)  # logits of the last token only

    def step(self, prompt: np.ndarray, phase: str) -> LlamaCppStep:
        """A timed call: "prefill" evaluates `prompt` from an empty cache; "decode" caches `prompt` once, then each
        call evaluates one more token after it."""
        ids = [int(t) for t in prompt.reshape(-1)]
        if phase == "prefill":
            return LlamaCppStep(self.llm, 0, ids)
        self.llm.reset()
        self.llm.eval(ids)
        return LlamaCppStep(self.llm, len(ids), [ids[-1]])

    @staticmethod
    def window_logits(gguf: str | Path, threads: int, max_length: int):
        """ids int64 [L] -> logits float32 [L, vocab] of every position, from an empty cache. The function holds its
        own instance keeping every position's logits (n_ctx x vocab floats): drop it when done."""
        import llama_cpp
        from llama_cpp import Llama

        llama_cpp.llama_log_set(_quiet_log(), ctypes.c_void_p())
        llm = Llama(str(gguf), n_ctx=max_length, n_threads=threads, n_threads_batch=threads, n_batch=512,
                    logits_all=True, verbose=False)

        def logits(ids) -> np.ndarray:
            llm.reset()
            llm.eval([int(t) for t in ids])
            return np.array(llm.scores[: len(ids)], dtype=np.float32)

        return logits

    @staticmethod
    def window_scorer(gguf: str | Path, threads: int, max_length: int):
        """(window ids int64 [L], n_targets) -> summed NLL of the last n_targets tokens, from an empty cache."""
        logits = LlamaCppDecoder.window_logits(gguf, threads, max_length)

        def score(ids: Tensor, n_targets: int) -> float:
            return target_nll(torch.from_numpy(logits(ids)), ids, n_targets)

        return score
