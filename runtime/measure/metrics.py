"""Fidelity of a quantized model's outputs against the FP32 model's, on the same inputs (numpy)."""

from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def kl_divergence(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over rows of KL(softmax(ref) || softmax(logits)), in nats (llama.cpp's KLD statistic)."""
    p, q = log_softmax(ref_logits), log_softmax(logits)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def top1_agreement(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    return float((ref_logits.argmax(-1) == logits.argmax(-1)).mean())


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings [B, H]: hidden states [B, S, H] averaged over unmasked tokens (sentence-transformers)."""
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [n, H] arrays."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.clip(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30, None)
