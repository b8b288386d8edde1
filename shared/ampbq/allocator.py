"""Keep glibc from handing big buffers back to the kernel only to fault them in again.

The transform allocates a few ~1 MiB buffers per chunk of an hour (the inflated text, the rows).
glibc serves blocks that size with mmap and unmaps them on free, or trims them off the heap, so
every chunk starts on fresh pages: ~100k page faults and ~8% of the CPU time of a 200k-event hour
(the bare loop of `ampbq bench` gains the same). Raising both thresholds keeps those blocks in the
heap for reuse. The cost is that up to TRIM_THRESHOLD of freed memory stays with the process,
which the function's instance holds anyway between events.
"""

from __future__ import annotations

import ctypes
import logging

MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from <malloc.h>

log = logging.getLogger(__name__)


def keep_freed_buffers() -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune, nothing lost
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.warning("glibc refused the allocator thresholds; the transform runs, with more page faults")
    return done
