"""Giving memory that a large piece of work freed back to the system, and noticing when a
serving worker holds on to much more than it started with."""

from __future__ import annotations

import ctypes
import gc
import logging
import mmap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

log = logging.getLogger(__name__)


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
    large jobs and by a server worker once its requests have stopped for a moment, not after
    each request: on the request path the pages would only be faulted in again."""
    gc.collect()  # what a job built in reference cycles is freed only by the collector
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _Growth:
    """A serving worker's private memory against what it held once started (`watch_growth`).

    Why: some of what a large job allocates stays behind however much is trimmed: a few
    long-lived objects pin the interpreter's arenas, and pages the worker wrote are no longer
    shared with the parent it was forked from. Each retro-scan run over 100,000 new bank
    entries left 26-29 MB in the worker that ran it (docs/benchmarks.md). A fresh fork starts
    from the parent's shared pages again, so a worker that kept too much of a large job asks to
    be replaced: its job worker claims nothing more, and the server retires it in favour of a
    fresh worker (`core.server.HandedConnections`)."""

    def __init__(self) -> None:
        self.baseline_mb: float | None = None
        self.limit_mb = 0.0
        self.exceeded = threading.Event()

    def watch(self, limit_mb: float) -> None:
        self.limit_mb = limit_mb
        self.baseline_mb = private_mb() if limit_mb > 0 else None

    def check(self) -> bool:
        if self.baseline_mb is None or self.exceeded.is_set():
            return self.exceeded.is_set()
        grown = private_mb() - self.baseline_mb
        if grown > self.limit_mb:
            log.info(
                "worker memory grew past its limit; it will be replaced by a fresh one",
                extra={"grown_mb": round(grown, 1), "limit_mb": self.limit_mb},
            )
            self.exceeded.set()
        return self.exceeded.is_set()


_growth = _Growth()


def watch_growth(limit_mb: float) -> None:
    """Take this process's private memory now as its baseline, for `check_growth` to compare
    with (a `limit_mb` of 0: never replaced)."""
    _growth.watch(limit_mb)


def check_growth() -> bool:
    """After a large job, once its memory is given back (`release_free_memory`): whether this
    process has kept more than its limit and should be replaced by a fresh one. Always False
    in a process that does not watch its growth (the command line, tests)."""
    return _growth.check()


def grown_too_much() -> bool:
    """Whether this process asked to be replaced by a fresh one (see `_Growth`)."""
    return _growth.exceeded.is_set()


def anonymous_mb() -> float:
    """Resident memory not backed by a file (heap, arenas, anonymous mappings), in MB; 0 where
    the kernel does not say. Reading it takes microseconds, unlike `private_mb`: cheap enough
    to take before and after every job."""
    try:
        with open("/proc/self/statm") as statm:
            _, resident, file_backed, *_ = statm.read().split()
        return (int(resident) - int(file_backed)) * mmap.PAGESIZE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def private_mb() -> float:
    """Pages this process alone has written (heap, arenas, pages copied from its parent), in
    MB; 0 where the kernel does not say."""
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Private_Dirty:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


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
