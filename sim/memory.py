"""Keep freed memory in the process instead of handing it back to the operating system.

The engine and SALib's bootstrap allocate and free arrays of a few megabytes many times over.
glibc serves allocations that large with fresh ``mmap`` pages and returns freed ones at once, so
every array pays its page faults again: on a virtual machine that cost more than the arithmetic
(SALib's Sobol analysis of a 26,624-run sweep spent 8 of its 15 s in the kernel). Raising the two
thresholds below makes freed memory reused, which halves those times; peak memory stays that of
the largest working set (docs/performance.md). Entry points and worker processes call
:func:`keep_freed_memory`; importing the package changes nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value: bigger blocks still get their own pages
TRIM_THRESHOLD = 512 * 2**20


@functools.cache  # every chunk and every post-sweep task asks: look it up once per process
def _glibc(function: str):
    """``function`` of glibc, or None off Linux or on another C library (musl and others)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; return whether it applied.

    A no-op (False) off Linux or on a C library other than glibc. Calling it again is harmless.
    """
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Hand the memory freed so far back to the operating system: glibc's, and Arrow's when loaded.

    Returns whether glibc's ``malloc_trim`` released any (False as well off glibc).

    For a process that moves on from work that allocates the same large arrays again and again to
    other work (a sweep's workers from the chunks to the analysis and figures, the main process from
    reading the chunks to drawing): what :func:`keep_freed_memory` kept would otherwise stay
    resident beside the new work's. Arrow's allocator (mimalloc or jemalloc) keeps what it freed
    too, and a table converted to pandas without a copy frees its buffers there, not to glibc, once
    the frame goes: 46 MB at the figures of an N = 4096 Sobol study. pyarrow is asked only if
    something imported it.
    """
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    trim = _glibc("malloc_trim")
    return trim is not None and bool(trim(0))
