import numpy as np
import pytest

from svdq_edge.runtime.measure.latency import measure_interleaved, peak_rss_mb, synthetic_feed, time_interleaved
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.runtime.validation.validate import linear_bits_per_weight
from tests.runtime.helpers import tiny_linear_model


class FakeSession:
    """Stands in for an InferenceSession with token inputs."""

    class _In:
        def __init__(self, name):
            self.name = name

    def __init__(self):
        self.calls = 0

    def get_inputs(self):
        return [self._In("input_ids"), self._In("attention_mask"), self._In("token_type_ids")]

    def run(self, _outputs, feed):
        assert feed["input_ids"].shape == (2, 7) and feed["input_ids"].dtype == np.int64
        self.calls += 1


def test_synthetic_feed_covers_every_input():
    f = synthetic_feed(FakeSession(), 2, 7, vocab=500)
    assert set(f) == {"input_ids", "attention_mask", "token_type_ids"}
    assert f["attention_mask"].all() and not f["token_type_ids"].any()
    assert f["input_ids"].max() < 500


def test_interleaved_timing_runs_every_session_the_same_number_of_times():
    a, b = FakeSession(), FakeSession()
    res = measure_interleaved([a, b], 2, 7, vocab=100, warmup=2, runs=11, rounds=3)  # settles 6 x 50 ms
    assert a.calls == b.calls == 2 + 3 + 11  # warm-up, one wake-up call per round, timed runs
    for r in res:
        assert r.runs == 11 and 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.tokens_per_s == pytest.approx(r.seqs_per_s * 7)


def test_real_session_latency_grows_with_the_work_and_memory_probe():
    """Timed on a real session: 4096x the rows takes longer (a timer that measured nothing would fail)."""
    sess = make_session(tiny_linear_model(), "cpu", threads=1)
    x = np.zeros((1, 4, 64), dtype=np.float32)
    assert sess.run(None, {"x": x})[0].shape == (1, 4, 32)
    feeds = [{"x": np.zeros((b, s, 64), dtype=np.float32)} for b, s in ((1, 1), (64, 256))]
    small, big = time_interleaved([sess, sess], feeds, warmup=2, runs=15)
    assert len(small) == len(big) == 15 and 0 < np.median(small) < np.median(big)
    rss = peak_rss_mb()  # Linux (/proc): this process holds torch and onnxruntime, hundreds of MB
    assert rss is not None and rss > 100


def test_linear_bits_per_weight_counts_codes_scales_zeros_and_correction(tmp_path):
    (tmp_path / "model.onnx").write_bytes(tiny_linear_model("channel"))
    bits = linear_bits_per_weight(tmp_path)
    # 4-bit codes, per 32 weights one FP32 scale and one 4-bit zero; keep 5% of 64 = 3 channels in FP32 + indices.
    expected = 4 + 36 / 32 + (3 * 32 * 32 + 3 * 64) / (32 * 64)
    assert abs(bits - expected) < 1e-9


def test_peak_rss_growth_sees_what_the_block_allocated():
    from svdq_edge.runtime.measure.latency import PeakRssGrowth

    with PeakRssGrowth() as idle:
        pass
    with PeakRssGrowth() as busy:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    if idle.mb is None:  # no /proc here: nothing to measure
        assert busy.mb is None
    else:
        assert busy.mb > 50 and busy.mb > idle.mb + 40
