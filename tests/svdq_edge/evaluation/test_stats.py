import math

import pytest

from svdq_edge.evaluation.stats import mcnemar_exact, paired_compare, wilson_interval


def test_wilson_interval_matches_hand_computation():
    # 773/872 (the SST-2 FP32 model): p = 0.8865; Wilson 95% interval computed by hand from the formula.
    lo, hi = wilson_interval(773, 872)
    z = 1.959963984540054
    p, n = 773 / 872, 872
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((c - h, c + h))
    assert lo == pytest.approx(0.8637, abs=1e-4) and hi == pytest.approx(0.9059, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_mcnemar_exact_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    # b=0, c=6: 2 * 0.5^6 = 0.03125
    assert mcnemar_exact(0, 6) == pytest.approx(0.03125)
    # b=1, c=9: 2 * (1 + 10) / 1024
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)


def test_paired_compare_counts_discordant_pairs():
    a = [True, True, False, False, True]
    b = [True, False, True, True, True]
    r = paired_compare(a, b)
    assert (r.n, r.b_only, r.a_only) == (5, 2, 1)
    assert r.diff == pytest.approx(0.2)
    # Wald interval of a paired difference, by hand: se = sqrt(b + c - (b - c)^2 / n) / n, b = 2, c = 1, n = 5
    se = math.sqrt(3 - 1 / 5) / 5
    assert r.ci == pytest.approx((0.2 - 1.959963984540054 * se, 0.2 + 1.959963984540054 * se))
    assert r.p_value == pytest.approx(1.0)  # McNemar on 2 vs 1 discordant pairs: 2 * (1 + 3) / 8 capped at 1
    with pytest.raises(ValueError):
        paired_compare([True], [True, False])
