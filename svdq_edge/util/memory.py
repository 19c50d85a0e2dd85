"""Process-level memory tuning, called by entry points only (the CLI, benchmark children), never by library code.

Quantizing layer by layer allocates and frees many layer-sized blocks (a few MB each). glibc raises its mmap
threshold each time such a block is freed, after which blocks of that size come from the heap, and freed heap memory
is rarely returned to the system: the process's RSS then grows by hundreds of MB of dead layers (measured on
SmolLM2: 997 MiB peak for quantize instead of 553). A fixed threshold keeps every block of 64 KiB or more in its own
mapping, released on free. At 1 MiB the per-layer scales, zero points and corrections (tens to hundreds of KiB)
still fragmented the heap: SmolLM2's quantize + export (recipe) peaked at 524-557 MiB (1.02-1.09x its 513 MiB of
FP32 weights) against 509-512 (0.99-1.00x) at 64 KiB, in three runs of `python -m svdq_edge.runtime.bench.decoder
child`, for 1-2 s more of mmap traffic in a 7-9 s job.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
THRESHOLD_BYTES = 64 << 10


def bound_heap() -> bool:
    """Fix glibc's mmap threshold at THRESHOLD_BYTES; returns False where there is no glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    Linux: VmHWM, the high-water mark of this address space. Not getrusage's ru_maxrss, which a child process
    inherits from its parent across fork and exec: a benchmark child started by a large parent would report the
    parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
