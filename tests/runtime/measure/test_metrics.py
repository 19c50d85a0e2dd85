import math

import numpy as np
import pytest

from svdq_edge.runtime.measure.metrics import cosine_similarity, kl_divergence, mean_pool, top1_agreement


def test_kl_matches_hand_computation():
    ref = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (1/2, 1/2) and (3/4, 1/4)
    q = np.array([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])  # q = (3/4, 1/4) twice
    kl_row0 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_divergence(ref, q) == pytest.approx(kl_row0 / 2)
    assert kl_divergence(ref, ref) == pytest.approx(0.0, abs=1e-15)


def test_kl_is_shift_invariant_and_handles_large_logits():
    z = np.array([[1000.0, 999.0, 990.0]])
    assert kl_divergence(z, z - 1000) == pytest.approx(0.0, abs=1e-12)


def test_top1_agreement():
    a = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    b = np.array([[1, 0], [1, 0], [1, 0], [0, 1]])
    assert top1_agreement(a, b) == 0.75


def test_mean_pool_ignores_padding_and_cosine():
    h = np.array([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(h, mask), [[2.0, 1.0]])
    c = cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [-1.0, -1.0]]))
    np.testing.assert_allclose(c, [1.0, -1.0])
