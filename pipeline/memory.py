"""Handing freed memory back to the system, for a long-running server.

glibc keeps freed heap pages for reuse, so a process's resident size stays at its peak: after a training, or
after the largest batch it ever ran (docs/share-link.md). `release_memory` returns what is
free; the server calls it when it goes idle and when a training ends.
"""

from __future__ import annotations

import ctypes
import functools
import gc


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): the allocator keeps what it keeps
        return None


def release_memory(*, collect: bool = True) -> None:
    if collect:
        gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def limit_arenas(count: int = 2) -> None:
    """Cap glibc's malloc arenas (by default up to 8 per core). Each thread that allocates gets an arena of its
    own, and a server's threads come and go (request handlers, a training): memory freed in an arena nobody
    uses any more stays resident. Call it at start, before the threads (what MALLOC_ARENA_MAX does)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-8, count)  # M_ARENA_MAX
