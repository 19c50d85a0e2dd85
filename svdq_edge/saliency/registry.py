"""Name -> saliency method registry. A method is a pure function `W [out, in], ScoreContext -> scores [out, in]`.

Scores rank weights for the FP32 budget: higher = more worth keeping. A method returning None keeps nothing.
Adding a method is one new file with one `@register(...)` function; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class ScoreContext:
    """What a saliency function may use besides W.

    rank:        SVD rank (int >= 1) or spectral-energy fraction (float in (0, 1)); None = the method's default.
    seed:        seed for random choices.
    input_scale: float32 [in] or None, a per-input-channel activation scale (a data-free proxy or calibration mean|x|).
    block_size, symmetric: the quantization grouping the kept weights are taken out of.
    """

    rank: int | float | None = None
    seed: int = 0
    input_scale: Tensor | None = None
    block_size: int = 128
    symmetric: bool = False


ScoreFn = Callable[[Tensor, ScoreContext], "Tensor | None"]


@dataclass(frozen=True)
class SaliencyMethod:
    name: str
    fn: ScoreFn
    summary: str
    needs_calibration: bool = False
    uses_input_scale: bool = False


_REGISTRY: dict[str, SaliencyMethod] = {}


def register(name: str, summary: str, needs_calibration: bool = False, uses_input_scale: bool = False):
    """Decorator registering `fn` under `name`."""

    def wrap(fn: ScoreFn) -> ScoreFn:
        if name in _REGISTRY:
            raise ValueError(f"saliency method {name!r} registered twice")
        _REGISTRY[name] = SaliencyMethod(name, fn, summary, needs_calibration, uses_input_scale)
        return fn

    return wrap


def get(name: str) -> SaliencyMethod:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown saliency method {name!r}; choose from {', '.join(available())}") from None


def available() -> list[str]:
    return sorted(_REGISTRY)
