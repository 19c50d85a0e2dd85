"""Confidence intervals and paired tests for accuracy claims (same examples under two models)."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


@dataclass(frozen=True)
class PairedComparison:
    """Model B against model A on the same n examples.

    b_only: examples B gets right and A wrong; a_only: the reverse.
    diff, ci: accuracy(B) - accuracy(A) and its 95% interval (Wald, paired).
    p_value: exact two-sided McNemar test on the discordant pairs.
    """

    n: int
    b_only: int
    a_only: int
    diff: float
    ci: tuple[float, float]
    p_value: float


def paired_compare(correct_a: list[bool], correct_b: list[bool]) -> PairedComparison:
    if len(correct_a) != len(correct_b):
        raise ValueError("paired comparison needs the same examples under both models")
    n = len(correct_a)
    b_only = sum(1 for a, b in zip(correct_a, correct_b, strict=True) if b and not a)
    a_only = sum(1 for a, b in zip(correct_a, correct_b, strict=True) if a and not b)
    diff = (b_only - a_only) / n if n else 0.0
    se = math.sqrt(max((b_only + a_only) - (b_only - a_only) ** 2 / n, 0.0)) / n if n else 0.0
    return PairedComparison(n, b_only, a_only, diff, (diff - Z95 * se, diff + Z95 * se),
                            mcnemar_exact(b_only, a_only))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial(b + c, 1/2) tail at min(b, c), doubled, capped at 1."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2**m
    return min(1.0, 2 * tail)
