"""ONNX Runtime sessions: execution provider by name, thread count, and no silent provider fallback."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from svdq_edge.artifact.layout import model_file
from svdq_edge.errors import UserError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ProviderError(UserError, RuntimeError):
    """The requested execution provider is not available; the message says what is and how to get it."""


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build offers (e.g. ['cpu'] or ['cuda', 'cpu'])."""
    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in have]


def resolve_provider(provider: str, fallback: str | None = None) -> str:
    """The provider to use: `provider` when present, `fallback` only when explicitly given, else an error."""
    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r}; choose from {', '.join(PROVIDERS)}")
    if provider in available_providers():
        return provider
    if fallback is not None:
        return resolve_provider(fallback)
    hint = " (install onnxruntime-gpu in place of onnxruntime, with a CUDA runtime)" if provider == "cuda" else ""
    raise ProviderError(f"execution provider {provider!r} is not available in onnxruntime {ort.__version__}: "
                        f"have {', '.join(available_providers()) or 'none'}{hint}")


def make_session(model: str | Path | bytes, provider: str = "cpu", threads: int | None = None,
                 fallback: str | None = None) -> ort.InferenceSession:
    """An InferenceSession on exactly one provider (CUDA sessions keep CPU only for ops CUDA lacks)."""
    provider = resolve_provider(provider, fallback)
    so = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    providers = [PROVIDERS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
    path_or_bytes = model if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and Path(model).is_dir():
        path_or_bytes = str(model_file(model))
    if not isinstance(path_or_bytes, bytes) and not Path(path_or_bytes).is_file():
        raise UserError(f"{path_or_bytes}: no such ONNX file")
    sess = ort.InferenceSession(path_or_bytes, so, providers=providers)
    if PROVIDERS[provider] not in sess.get_providers():
        raise ProviderError(f"onnxruntime did not enable {provider!r} for this model (got {sess.get_providers()})")
    return sess
