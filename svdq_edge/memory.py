"""Process-level memory tuning, called by entry points only (the CLI, benchmark children), never by library code.

Quantizing layer by layer allocates and frees many layer-sized blocks (a few MB each). glibc raises its mmap
threshold each time such a block is freed, after which blocks of that size come from the heap, and freed heap memory
is rarely returned to the system: the process's RSS then grows by hundreds of MB of dead layers (measured on
SmolLM2: 997 MiB peak for quantize instead of 553). A fixed threshold keeps every block of 1 MiB or more in its own
mapping, released on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
THRESHOLD_BYTES = 1 << 20


def bound_heap() -> bool:
    """Fix glibc's mmap threshold at 1 MiB; returns False where there is no glibc (macOS, Windows, musl)."""
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
