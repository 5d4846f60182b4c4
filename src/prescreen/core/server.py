"""`prescreen serve`: one HTTP worker process per core, forked from a parent that has already
imported the code and brought the index snapshot up to date.

Why not uvicorn's own `--workers`: it spawns fresh interpreters, so every worker imports
everything again and builds or loads the index on its own (several copies, and a race on the
snapshot files). Forking after the imports shares those pages copy-on-write; each worker then
memory-maps the same snapshot, so the index is in memory once per host however many workers
run. The parent restarts a worker that dies (a `kill -9`, an out-of-memory kill) and stops
them all on SIGTERM or SIGINT.

Why the parent accepts the connections and hands them round-robin to the workers, rather than
letting the workers accept from a shared socket: a worker's event loop accepts every connection
that is waiting when it wakes, so a client that opens its pool of keep-alive connections at
once had all of them in one worker while the other cores idled (the screening bench's 4
connections over 2 workers: 4 and 0 in every run where the split was recorded). Node's
cluster module hands out connections from its primary process for the same reason.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import itertools
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

import uvicorn
from prometheus_client import multiprocess

from prescreen.core.config import Settings
from prescreen.core.memory import grown_too_much, release_free_memory, watch_growth

log = logging.getLogger("prescreen.server")
APP = "prescreen.app:app_from_env"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MADV_PAGEOUT = 21  # linux/mman.h (Linux 5.4+)
SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*$")  # libz.so.1.3, _core.cpython-311-x86_64-linux-gnu.so
RESTART_PAUSE_SECONDS = 1.0
QUIET_SECONDS = 1.0  # how long a worker goes without a request before it trims its heap
HAND_OVER_SECONDS = 5.0  # how long a connection may wait for a worker that can take it
RETIRE = b"r"  # a worker's one message to the parent: hand me no more connections
# A retiring worker that has taken its last connection waits this long before it exits, so a
# client that connected just before has sent its request (served) rather than found the
# connection closed.
LAST_CONNECTION_GRACE_SECONDS = 1.0


def worker_count(settings: Settings, requested: int | None) -> int:
    return requested or settings.web_workers or os.cpu_count() or 1


def uvicorn_config(**kwargs: object) -> uvicorn.Config:
    return uvicorn.Config(APP, factory=True, log_config=None, server_header=False, **kwargs)


def prepare_environment(settings: Settings, workers: int) -> None:
    """Settings that only take effect at process start, so set them and start this command
    again: several workers must add up their Prometheus counters, which needs
    PROMETHEUS_MULTIPROC_DIR (an emptied folder under the data directory) set before
    prometheus_client is first imported."""
    if workers <= 1 or os.environ.get(METRICS_ENV):
        return
    folder = settings.data_dir / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[METRICS_ENV] = str(folder.resolve())
    # glibc gives each thread that allocates at the same time an arena of its own, and each
    # arena keeps what was freed in it. One arena for a GIL-bound worker: against two, the
    # service held 20-30 MB less once screening stopped (7-14 MB less right after), at the same
    # CPU per screen (docs/benchmarks.md).
    # glibc's mmap threshold stays dynamic on purpose: fixing it (and with it the heap trim
    # threshold) at 128 KiB saved ~100 MB under load but made every decode buffer and array a
    # fresh mapping to fault in again: it doubled the CPU time of a screened 2 MP JPEG (64-71 ms
    # instead of 32; docs/benchmarks.md).
    os.environ.setdefault("MALLOC_ARENA_MAX", "1")
    os.execv(sys.executable, [sys.executable, "-m", "prescreen.cli", *sys.argv[1:]])


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM/SIGINT; with several workers, the parent listens and hands each
    connection to one of them."""
    if workers <= 1:
        LeanServer(uvicorn_config(host=host, port=port)).run()
        return
    prepare_snapshot(settings)
    listener = socket.create_server((host, port), backlog=2048, reuse_port=False)
    Supervisor(listener, workers, settings).run()


def prepare_snapshot(settings: Settings) -> None:
    """Bring the on-disk PDQ index snapshot up to date in a short-lived child, so workers start
    by memory-mapping it and the parent never holds an index of its own."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from prescreen.core.db import Database
            from prescreen.matching.service import refresh_snapshot

            refresh_snapshot(Database(settings.database_url), settings.data_dir / "index")
            code = 0
        except BaseException:
            log.exception("could not prepare the index snapshot; workers will build their own")
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def preload() -> None:
    """Import and warm what every worker needs before forking, so its pages are shared: the
    application's code and its ORM mappings, the text model, OpenCV (text detection), and the
    compiled kernels of image hashing, text features and the PDQ index (left to the workers,
    each would load them on its first request, and bring the compiler's pages into its own
    memory)."""
    import numpy as np
    from PIL import Image
    from sqlalchemy.orm import configure_mappers

    import prescreen.app  # noqa: F401
    from prescreen.classify.service import default_classifier
    from prescreen.matching.pdq_index import PDQIndex
    from prescreen.signals.image_variants import query_variants
    from prescreen.signals.ocr import text_regions
    from prescreen.signals.registry import all_types

    configure_mappers()
    default_classifier().score(["warm the text model's kernel and feature lookup"])
    all_types()  # register every signal type once, before the workers' threads ask
    codes = np.random.default_rng(0).integers(0, 2**63, size=(4096, 4), dtype=np.uint64)
    index = PDQIndex.build(codes, np.arange(4096, dtype=np.int64))
    for strategy in ("mih", "linear"):
        index.search(codes[0], 31, strategy=strategy)
    query_variants(Image.new("RGB", (64, 64)))
    text_regions(np.zeros((64, 64), dtype=np.uint8))


def release_library_pages() -> None:
    """Ask the kernel to take back the parent's pages of library code (shared libraries and
    the interpreter). Importing and warming everything leaves code resident that only the
    parent touched: 55-70 MB of LLVM's (the kernels are compiled, nothing more is), and the
    start-up paths of OpenCV, Tesseract, SciPy and the rest. A worker faults in, from the file,
    only the pages it runs. Read-only file mappings only, and only a hint: a page another
    process maps, or that the kernel will not reclaim, stays."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    interpreter = os.path.realpath(sys.executable)
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or "w" in fields[1]:
            continue
        path = fields[5]
        if not SHARED_LIBRARY.search(path) and path != interpreter:
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        libc.madvise(start, end - start, MADV_PAGEOUT)


def _stop_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the parent dies without stopping it (a crash, a
    `kill -9`): no worker is left serving or running jobs on its own, holding the port a
    restarted server needs. (A stopped parent stops its workers gracefully first.) Work in
    flight is lost as in any crash; transactions keep the database whole."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@dataclass
class Supervisor:
    listener: socket.socket
    workers: int
    settings: Settings

    def __post_init__(self) -> None:
        self.parent = os.getpid()
        self.children: dict[int, float] = {}
        self.channels: dict[int, socket.socket] = {}  # worker pid -> where its connections go
        self.retired: dict[int, socket.socket] = {}  # workers handed no more connections
        self.replacements = 0  # fresh workers owed for retired ones, forked by the main loop
        self.forking = threading.Lock()
        self.changing = threading.Lock()  # the accept thread and the main loop edit the above
        self.accepting: threading.Thread | None = None
        self.stopping = False
        self.app_config = uvicorn_config()

    def run(self) -> None:
        from prescreen.signals import ocr

        preload()
        # The application itself is built once, here, and shared: built in each worker, its
        # routes, models and the imports uvicorn makes for it were ~18 MB more per worker.
        self.app_config.load()
        ocr.share_cores(self.workers)
        if self.settings.ocr_enabled:
            try:
                ocr.load_readers(self.settings.ocr_languages)
            except ocr.OcrUnavailable as exc:  # screening logs it once per worker
                log.warning("OCR readers not loaded: %s", exc)
        release_library_pages()
        gc.collect()
        gc.freeze()  # keep the shared pages shared: the collector would otherwise touch them
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("serving", extra={"workers": self.workers, "address": self._address()})
        for _ in range(self.workers):
            self._spawn()
        self.accepting = threading.Thread(target=self._hand_out, name="accept", daemon=True)
        self.accepting.start()
        while not self.stopping:
            self._reap_and_restart()
            time.sleep(0.2)
        self._shutdown()

    def _address(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self.forking:
            pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _stop_with_parent(self.parent)
            for other in (self.listener, ours, *self.channels.values()):
                other.close()
            code = 0
            try:
                HandedConnections(self.app_config, theirs, self.settings.worker_refresh_mb).run()
            except BaseException:
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        with self.changing:  # replaced whole: the accept thread reads it without the lock
            self.channels = {**self.channels, pid: ours}
        self.children[pid] = time.monotonic()

    def _hand_out(self) -> None:
        """Accept connections and hand each to the next worker in turn; one whose queue is full
        (or that has just died) is passed over. A connection is accepted, handed over and closed
        here under `forking`, so a worker forked meanwhile never inherits one (it would hold the
        connection open after the worker serving it closed it)."""
        turn = itertools.count()
        self.listener.setblocking(False)
        gone: set[socket.socket] = set()  # channels of workers that died, until reaped
        while not self.stopping:
            channels = {pid: c for pid, c in self.channels.items() if c not in gone}
            gone &= set(self.channels.values())
            ready, _, _ = select.select([self.listener, *channels.values()], [], [], 0.5)
            for pid, channel in channels.items():
                if channel in ready and not self._heard_from(pid, channel):
                    gone.add(channel)
            if self.listener not in ready:
                continue
            with self.forking:
                try:
                    connection, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError:
                    log.exception("could not accept a connection")
                    time.sleep(0.1)
                    continue
                with connection:
                    # as uvicorn's own accept would: small responses are not held back by Nagle
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._hand_over(connection, turn)

    def _hand_over(self, connection: socket.socket, turn: itertools.count) -> None:
        deadline = time.monotonic() + HAND_OVER_SECONDS
        while not self.stopping and time.monotonic() < deadline:
            channels = list(self.channels.values())
            start = next(turn)
            for offset in range(len(channels)):
                try:
                    socket.send_fds(
                        channels[(start + offset) % len(channels)], [b"c"], [connection.fileno()]
                    )
                    return
                except OSError:  # full (BlockingIOError), or the worker is gone
                    continue
            time.sleep(0.01)
        log.warning("no worker could take a connection; closed it")

    def _heard_from(self, pid: int, channel: socket.socket) -> bool:
        """A worker that asks to retire gets no further connection: its channel leaves the
        rotation and the parent closes its end for writing, which the worker reads, after the
        connections already sent, as "that was the last one". A fresh worker is forked at once,
        by the main loop, so the service keeps its capacity while the old one finishes."""
        try:
            message = channel.recv(16)
        except BlockingIOError:
            return True
        except OSError:
            message = b""
        if not message:  # the worker is gone; the main loop reaps it and closes this
            return False
        if message != RETIRE:
            return True
        with self.changing:
            self.channels = {p: c for p, c in self.channels.items() if p != pid}
            self.retired[pid] = channel
            self.replacements += 1
        channel.shutdown(socket.SHUT_WR)
        log.info("a worker is handing over to a fresh one", extra={"pid": pid})
        return True

    def _reap_and_restart(self) -> None:
        while self.replacements and not self.stopping:
            with self.changing:
                self.replacements -= 1
            self._spawn()
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            started = self.children.pop(pid, None)
            with self.changing:
                retired = self.retired.pop(pid, None)
                channels = dict(self.channels)
                channel = channels.pop(pid, None) or retired
                self.channels = channels
            if channel is not None:
                channel.close()
            multiprocess.mark_process_dead(pid)
            if started is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if retired is not None:  # its replacement is running already
                log.log(
                    logging.INFO if code == 0 else logging.WARNING,
                    "a worker handed over to a fresh one and exited",
                    extra={"pid": pid, "status": code},
                )
                continue
            log.warning("worker exited; starting another", extra={"pid": pid, "status": code})
            if time.monotonic() - started < RESTART_PAUSE_SECONDS:
                time.sleep(RESTART_PAUSE_SECONDS)  # a worker that dies at once: don't spin
            self._spawn()

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        if self.accepting is not None:
            self.accepting.join()  # it sees `stopping` within half a second
        self.listener.close()  # accept no more
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.children.pop(pid, None)
        deadline = time.monotonic() + 30
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.pop(pid, None)
            else:
                time.sleep(0.1)
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)
        log.info("stopped")


class LeanServer(uvicorn.Server):
    """A uvicorn server that gives the memory its requests freed back to the system once it
    has had no request for `QUIET_SECONDS`.

    Why: glibc keeps what a process frees (decode buffers, arrays) for its next allocations,
    and after a burst of uploads each worker held 15-20 MB of it while idle. Trimming after
    every request would make each one fault its buffers in again (that doubled the CPU of a
    screen when tried through glibc's thresholds, docs/benchmarks.md); trimming once a burst
    is over costs nothing on the request path."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.requests_seen = 0
        self.last_request_at = time.monotonic()
        self.trimmed = True

    async def on_tick(self, counter: int) -> bool:
        now = time.monotonic()
        if self.server_state.total_requests != self.requests_seen:
            self.requests_seen = self.server_state.total_requests
            self.last_request_at, self.trimmed = now, False
        elif (
            not self.trimmed
            and not self.server_state.tasks
            and now - self.last_request_at >= QUIET_SECONDS
        ):
            self.trimmed = True  # in a thread: a collection and a trim take milliseconds
            asyncio.get_running_loop().run_in_executor(None, release_free_memory)
        return await super().on_tick(counter)


class HandedConnections(LeanServer):
    """A worker's uvicorn that serves the connections the parent hands it over `channel`
    (one descriptor per message) instead of accepting any itself.

    A worker whose private memory has grown more than `refresh_mb` since it started
    (`core.memory.watch_growth`) retires: it asks the parent for no more connections, serves
    those already handed to it, and exits once none has a request in flight; the parent forks
    a fresh worker as soon as it is asked. A connection is thus never handed to a worker that
    is about to close it."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, refresh_mb: float) -> None:
        super().__init__(config)
        self.channel = channel
        self.refresh_mb = refresh_mb
        self.opening: set[asyncio.Task] = set()  # kept referenced until each connection is set up
        self.retiring = False  # asked the parent for no more connections
        self.last_taken: float | None = None  # when the parent said its last one was sent

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        watch_growth(self.refresh_mb)  # started: what it holds now is its baseline
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._take)

    async def on_tick(self, counter: int) -> bool:
        if grown_too_much() and not self.retiring:
            self._retire()
        if (
            self.last_taken is not None
            and time.monotonic() - self.last_taken >= LAST_CONNECTION_GRACE_SECONDS
            and not self.server_state.tasks
            and not self.should_exit
        ):
            log.info("handed over to a fresh worker; exiting")
            self.should_exit = True
        return await super().on_tick(counter)

    def _retire(self) -> None:
        log.info("worker memory over its limit; handing over to a fresh worker")
        self.retiring = True
        try:
            self.channel.send(RETIRE)
        except OSError:  # the parent is gone: it stops this worker itself
            log.warning("could not ask the parent for a replacement")

    def _take(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            message, descriptors, _, _ = socket.recv_fds(self.channel, 1, 1)
        except BlockingIOError:
            return
        except OSError:
            message, descriptors = b"", []
        if not message:  # the parent closed its end: retired, or it is stopping or gone
            loop.remove_reader(self.channel.fileno())
            if self.retiring:
                self.last_taken = time.monotonic()
            return
        for descriptor in descriptors:
            connection = socket.socket(fileno=descriptor)
            connection.setblocking(False)
            if self.should_exit:
                connection.close()
                continue
            task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
            self.opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task) -> None:
        self.opening.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.info("a handed connection closed before it was served", extra={"error": str(error)})

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(  # what uvicorn's own accept would create
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        self.channel.close()
        await super().shutdown(sockets)
