"""Latency, throughput and memory of an ONNX Runtime session on synthetic token batches."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm.auto import tqdm

from svdq_edge.artifact.layout import model_files
from svdq_edge.errors import UserError
from svdq_edge.runtime.decode.session import decoder_feed, is_decoder


@dataclass(frozen=True)
class LatencyResult:
    batch: int
    seq: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    seqs_per_s: float  # at the median latency
    tokens_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def synthetic_feed(session: ort.InferenceSession, batch: int, seq: int, vocab: int, seed: int = 0) -> dict:
    """Random token ids with full attention masks, for every input the session declares (a decoder gets an empty
    KV cache: this times the prompt pass)."""
    rng = np.random.default_rng(seed)
    if is_decoder(session):
        ids = rng.integers(1000 if vocab > 2000 else 0, vocab, (batch, seq), dtype=np.int64)
        return decoder_feed(session, ids, np.ones((batch, seq), dtype=np.int64))
    feed = {}
    for i in session.get_inputs():
        if i.name == "input_ids":
            feed[i.name] = rng.integers(1000 if vocab > 2000 else 0, vocab, (batch, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            feed[i.name] = np.ones((batch, seq), dtype=np.int64)
        elif i.name in ("token_type_ids", "position_ids"):
            feed[i.name] = np.zeros((batch, seq), dtype=np.int64) if i.name == "token_type_ids" else \
                np.tile(np.arange(seq, dtype=np.int64), (batch, 1))
        else:
            raise UserError(f"cannot synthesise model input {i.name!r}")
    return feed


def _summarise(times: np.ndarray, batch: int, seq: int) -> LatencyResult:
    p50, p90, p99 = (float(np.percentile(times, q)) for q in (50, 90, 99))
    return LatencyResult(batch, seq, len(times), 1e3 * p50, 1e3 * p90, 1e3 * p99, batch / p50, batch * seq / p50)


def measure_latency(session: ort.InferenceSession, batch: int, seq: int, vocab: int, warmup: int = 5,
                    runs: int = 30) -> LatencyResult:
    """Warm up, then time `runs` calls; percentiles over the individual calls."""
    return measure_interleaved([session], batch, seq, vocab, warmup, runs, rounds=1)[0]


def measure_interleaved(sessions: list[ort.InferenceSession], batch: int, seq: int, vocab: int, warmup: int = 5,
                        runs: int = 30, rounds: int = 5, progress: bool = False) -> list[LatencyResult]:
    """Latency of several token-input sessions on the same synthetic batch, timed fairly (see `time_interleaved`)."""
    feeds = [synthetic_feed(s, batch, seq, vocab) for s in sessions]
    desc = f"latency {batch}x{seq}" if progress else None
    return [_summarise(t, batch, seq) for t in time_interleaved(sessions, feeds, warmup, runs, rounds, desc=desc)]


def time_interleaved(sessions: list, feeds: list[dict], warmup: int = 5, runs: int = 30, rounds: int = 5,
                     settle_s: float = 0.05, desc: str | None = None) -> list[np.ndarray]:
    """Seconds per call of each session on its feed, `runs` calls each.

    The timed calls are split into `rounds`; each round visits every session in turn, so slow drifts in machine
    load (other processes, thermal state) fall on all sessions alike instead of on whichever ran last. Before each
    session's block the process sleeps `settle_s`: ONNX Runtime's intra-op threads keep spinning for a while after
    a run, and the previous session's spinning threads would otherwise steal cores from the one being timed.
    `desc`: show a progress bar (one step per session block, updated outside the timed calls).
    A session in another process (ort-node) reports its own time of the call as `last_run_s`: the pipe's round
    trip is not the model's latency.
    """
    bar = tqdm(total=rounds * len(sessions), desc=desc, disable=desc is None, leave=False)
    for s, f in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            s.run(None, f)
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    times: list[list[float]] = [[] for _ in sessions]
    for n in per_round:
        for i, (s, f) in enumerate(zip(sessions, feeds, strict=True)):
            time.sleep(settle_s)
            s.run(None, f)  # one untimed call: the thread pool wakes up
            for _ in range(n):
                t = time.perf_counter()
                s.run(None, f)
                took = time.perf_counter() - t
                times[i].append(getattr(s, "last_run_s", None) or took)
            bar.update()
    bar.close()
    return [np.asarray(t) for t in times]


class PeakRssGrowth:
    """`with PeakRssGrowth() as g: ...`: afterwards `g.mb` is this process's peak RSS growth over the block in MB
    (the high-water mark is reset on entry), or None where /proc is absent."""

    def __enter__(self) -> PeakRssGrowth:
        reset_peak_rss()
        self._before, self.mb = current_rss_mb(), None
        return self

    def __exit__(self, *exc) -> None:
        peak = peak_rss_mb()
        self.mb = None if self._before is None or peak is None else peak - self._before


def current_rss_mb() -> float | None:
    return _proc_status_mb("VmRSS:")


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of this process's RSS (Linux; a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    """This process's peak RSS in MB since the last reset (VmHWM), or None where /proc is absent."""
    return _proc_status_mb("VmHWM:")


def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def model_size_mb(model_dir: str | Path) -> float:
    """The ONNX file plus its external data files, in MB."""
    return sum(p.stat().st_size for p in model_files(model_dir)) / 1e6
