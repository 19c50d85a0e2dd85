"""Name -> saliency method registry. A method is a pure function `W [out, in], ScoreContext -> scores [out, in]`.

Scores rank weights for the FP32 budget: higher = more worth keeping. A method returning None keeps nothing.
Adding a method is one new file with one `@register(...)` function; nothing else changes. Flags on the
registration say what else the method needs or changes:

- keeps:             False for methods that never keep FP32 weights (rtn, gptq), whatever the structure;
- needs_calibration: the context must carry calibration statistics (input_scale and/or hessian);
- error_feedback:    the codes are produced by GPTQ-style error feedback instead of round-to-nearest;
- basis:             the function returns an orthonormal basis R [in, r] (r = ctx.rank) of the FP32 low-rank
                     branch instead of scores; the method then always uses the lowrank structure;
- scale_search:      per-input-channel scales are searched and folded into the previous op before quantizing.
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
    hessian:     float32 [in, in] or None, the calibration second moment X^T X / n of the layer's inputs.
    block_size, symmetric, bits: the quantization the kept weights are taken out of.
    """

    rank: int | float | None = None
    seed: int = 0
    input_scale: Tensor | None = None
    hessian: Tensor | None = None
    block_size: int = 128
    symmetric: bool = False
    bits: int = 4


ScoreFn = Callable[[Tensor, ScoreContext], "Tensor | None"]


@dataclass(frozen=True)
class SaliencyMethod:
    name: str
    fn: ScoreFn
    summary: str
    keeps: bool = True
    needs_calibration: bool = False
    uses_input_scale: bool = False
    error_feedback: bool = False
    basis: bool = False
    scale_search: bool = False


_REGISTRY: dict[str, SaliencyMethod] = {}


def register(name: str, summary: str, **flags: bool):
    """Decorator registering `fn` under `name`; `flags` are SaliencyMethod's boolean fields."""

    def wrap(fn: ScoreFn) -> ScoreFn:
        if name in _REGISTRY:
            raise ValueError(f"saliency method {name!r} registered twice")
        _REGISTRY[name] = SaliencyMethod(name, fn, summary, **flags)
        return fn

    return wrap


def get(name: str) -> SaliencyMethod:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown saliency method {name!r}; choose from {', '.join(available())}") from None


def available() -> list[str]:
    return sorted(_REGISTRY)
