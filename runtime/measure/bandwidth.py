"""The machine's memory read bandwidth, measured: the ceiling a memory-bound decode step is held against.

A STREAM-like probe: sum a float32 buffer far larger than any cache with `threads` threads (a read-only pass, as a
decode step reads its weights), best of several passes.
"""

from __future__ import annotations

import time

import torch


def read_bandwidth_gbs(threads: int = 2, mib: int = 1024, passes: int = 7) -> float:
    """GB/s (1e9 bytes) read by the fastest of `passes` sums over a `mib`-MiB buffer with `threads` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.ones(mib * 2**20 // 4, dtype=torch.float32)  # written once: every page is resident
        best = float("inf")
        for _ in range(passes):
            start = time.perf_counter()
            float(x.sum())
            best = min(best, time.perf_counter() - start)
        return x.numel() * 4 / best / 1e9
    finally:
        torch.set_num_threads(before)
