"""`run` answers "what should I ship?": a small model-aware set of candidates, and one pick among them by a stated
objective, measured beside the anchors (FP32, ORT's own quantizers) in one interleaved run.

`pick` is a pure function of the measured points: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import Enum

from svdq_edge.config import QuantConfig


class Objective(str, Enum):
    BALANCED = "balanced"  # the fastest candidate whose loss is at most the best baseline's
    SIZE = "size"  # the smallest file
    SPEED = "speed"  # the lowest latency
    FIDELITY = "fidelity"  # the least loss


@dataclass(frozen=True)
class Point:
    """One validated backend. `size_ratio`: its file over FP32's; `latency_ms`: p50 at the first timed shape (decode
    ms/token at 128 cached tokens for causal LMs); `loss`: KL to FP32 (classifiers), 1 - mean cosine (embedders) or
    the relative perplexity increase over FP32 (causal LMs); smaller is better on every axis."""

    name: str
    ours: bool  # a candidate we built (FP32 and ORT's baselines are anchors, never picked)
    size_ratio: float
    latency_ms: float
    loss: float


@dataclass(frozen=True)
class Pick:
    point: Point | None  # None when no candidate satisfies the caps
    why: str  # one line: the rule that chose it, or why nothing was chosen
    runners_up: dict[str, Point]  # per axis (size, speed, fidelity): the best other eligible candidate


def int8_config(base: QuantConfig, scale: str = "column") -> QuantConfig:
    """`base` on the int8 kernel: 8-bit round-to-nearest codes, no FP32 part, weight scales per `scale`."""
    return replace(base, bits=8, kernel="int8", method="rtn", keep=0.0, int8_scale=scale)


def mixed_config(base: QuantConfig, budget: float) -> QuantConfig:
    """`base` with 4- or 8-bit layers under an average `budget` of bits per weight, on the int8 kernel."""
    return replace(base, bits_budget=budget, kernel="int8")


def encoder_candidates(w4: QuantConfig) -> dict[str, QuantConfig]:
    """The default candidates for an encoder: the int8 kernel with per-tensor scales where they cost little (auto),
    4/8-bit mixes under two budgets on it, and W4 with our correction (`w4`, the configured default; the others
    share its block size, embedding and skipped layers). The budgets and the int8 scales are points `tune` found on
    the frontier of MiniLM, SST-2 and RTE (docs/encoders.md)."""
    return {"int8-auto": int8_config(w4, "auto"), "mixed-7": mixed_config(w4, 7.0),
            "mixed-5.75": mixed_config(w4, 5.75), "ours": w4}


def decoder_candidates(w4: QuantConfig) -> dict[str, QuantConfig]:
    """The default candidates for a causal LM that is not a GGUF (a GGUF's are its exact transcodes at accuracy
    levels 0 and 4): our method with an 8-bit and a 4-bit LM head (the head is the largest matrix of a small LM and
    the one most sensitive to 4 bits)."""
    return {"ours-head8": replace(w4, head_bits=8), "ours-head4": replace(w4, head_bits=4)}


def decoder_points(bench: dict, candidates: list[str]) -> list[Point]:
    """Points of a decoder validation (runtime/validation/decoders.py's bench.json): size over FP32's, decode
    ms/token at 128 cached tokens (p50), loss = relative perplexity increase over FP32 (ppl / ppl_fp32 - 1)."""
    names = [n for n in bench if isinstance(bench[n], dict) and "ppl" in bench[n]]
    ref = bench["fp32"]
    points = []
    for n in names:
        ms = next(x["p50_ms"] for x in bench[n]["latency"] if x["phase"] == "decode" and x["context"] == 128)
        points.append(Point(n, n in candidates, bench[n]["size_mb"] / ref["size_mb"], ms,
                            bench[n]["ppl"]["ppl"] / ref["ppl"]["ppl"] - 1.0))
    return points


def pick_dict(p: Pick, objective: str) -> dict:
    """The pick as report.json's meta.pick."""
    return {"objective": objective, "why": p.why, "pick": None if p.point is None else asdict(p.point),
            "runners_up": {axis: asdict(q) for axis, q in p.runners_up.items()}}


def pick(points: list[Point], objective: Objective, max_size: float | None = None,
         max_loss: float | None = None) -> Pick:
    """Our candidate that best meets `objective` among those within `max_size` (ratio to FP32) and `max_loss`.

    balanced: the fastest whose loss is at most the best baseline's (the least-loss one when none is); size, speed,
    fidelity: the best on that axis, ties broken by loss, then latency."""
    eligible = [p for p in points if p.ours and (max_size is None or p.size_ratio <= max_size)
                and (max_loss is None or p.loss <= max_loss)]
    caps = ", ".join(c for c in (f"size <= {max_size:g}x FP32" if max_size is not None else "",
                                 f"loss <= {max_loss:g}" if max_loss is not None else "") if c)
    if not eligible:
        return Pick(None, f"no candidate within {caps}" if caps else "no candidate was built", {})
    axis = {"size": lambda p: (p.size_ratio, p.loss), "speed": lambda p: (p.latency_ms, p.loss),
            "fidelity": lambda p: (p.loss, p.latency_ms)}
    within = f" within {caps}" if caps else ""
    if objective is Objective.BALANCED:
        anchors = [p for p in points if not p.ours and p.loss > 0]  # ORT's quantizers (FP32 is the reference)
        bar = min((p.loss for p in anchors), default=None)
        good = [p for p in eligible if bar is None or p.loss <= bar]
        if good:
            best = min(good, key=axis["speed"])
            why = (f"balanced: the fastest candidate{within} whose loss is at most the best baseline's "
                   f"({bar:.4g})" if bar is not None else f"balanced: the fastest candidate{within}")
        else:
            best = min(eligible, key=axis["fidelity"])
            why = f"balanced: no candidate{within} matches the best baseline's loss ({bar:.4g}); the least loss"
    else:
        best = min(eligible, key=axis[objective.value])
        word = {"size": "smallest", "speed": "fastest", "fidelity": "least-loss"}[objective.value]
        why = f"{objective.value}: the {word} candidate{within}"
    others = [p for p in eligible if p is not best]
    runners_up = {name: min(others, key=key) for name, key in axis.items()} if others else {}
    return Pick(best, why, runners_up)
