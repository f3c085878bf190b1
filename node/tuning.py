"""Process settings for the processes that move bulk data through Python threads: the daemon
(`amanah run`) and ingest (`amanah add`).

Both were measured with bench/replicate.py (1 GB of 1 MiB blocks, node A -> node B on
127.0.0.1, 2 cores), bench/net_throughput.py and bench/ingest.py (closed ingest of 20 x 50 MiB:
~262 -> ~310-330 MB/s), and neither changes what is stored or sent:

1. A GIL switch interval of 0.5 ms (CPython's default: 5 ms). The receiver's store thread
   releases the GIL around every LMDB put, hash and commit, a few hundred times per 16 MiB
   batch; while the network thread runs Python, each re-acquisition waited up to the whole
   interval (the "convoy effect"). An LMDB store loop beside one busy Python thread did
   24 MiB/s at 5 ms and 186 MiB/s at 0.2 ms; replication went from ~148 to ~170 MB/s.
2. glibc malloc keeps freed MiB-sized buffers for reuse (mmap threshold 32 MiB, trim threshold
   128 MiB). By default the first blocks freed raise the mmap threshold only to their own
   size, so a buffer growing past it (a yamux stream buffer, a joined frame) is a fresh mmap
   whose pages the kernel zero-fills on first touch and takes back on free: a fifth of the
   receiving network thread's time went to page faults. Replication went from ~170 to ~190
   MB/s, raw transfer (bench/net_throughput.py) from ~300 to ~380 MB/s. The cost is bounded:
   at most the trim threshold of freed memory stays mapped at the top of a heap.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

log = logging.getLogger("amanah.tuning")

SWITCH_INTERVAL = 0.0005  # seconds
MMAP_THRESHOLD = 32 << 20  # glibc's own upper bound for its dynamic threshold
TRIM_THRESHOLD = 128 << 20
# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_process() -> None:
    """Apply the settings above to this process. Call once, before starting threads."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return  # other allocators: nothing measured, nothing changed
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    for param, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if mallopt(param, value) != 1:
            log.debug("mallopt(%d, %d) refused", param, value)
