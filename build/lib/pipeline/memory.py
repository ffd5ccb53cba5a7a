"""Handing freed memory back to the system, for a long-running server.

glibc keeps freed heap pages for reuse, so a process's resident size stays at its peak: after a training
(+370 MB measured for one LoRA run), or after the largest batch it ever ran. `release_memory` returns what is
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
