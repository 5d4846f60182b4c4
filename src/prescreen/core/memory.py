"""Giving memory that a large piece of work freed back to the system."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        return None
    function.argtypes = [ctypes.c_size_t]
    return function


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`).

    glibc keeps what a process freed for its next allocations; after a one-off job (a
    retro-scan of 100,000 bank changes, a video) that memory is held for nothing. Called after
    long jobs and by a server worker once its requests have stopped for a moment, not after
    each request: on the request path the pages would only be faulted in again."""
    gc.collect()  # what a job built in reference cycles is freed only by the collector
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one bulk step of a command-line process.

    A bulk import keeps a million parsed entries alive until they are written, and every full
    collection walks all of them again: 3 of the 18 s that validating a million lines took.
    They hold no reference cycles, so not collecting frees nothing later than it would have
    been. Not for a server: it would pause collection for every request thread as well."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
