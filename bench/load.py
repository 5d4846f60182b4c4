"""Mixed load against a running prescreen server: capacity, then a steady load at a share of it.

The generator sends a mix of requests over HTTP with httpx, as platforms do: image uploads
(multipart JPEG, a fresh content id each), texts (JSON, classifiers included) and hash lookups
(half of them near a bank entry). It first measures capacity (closed loop: as many requests as
CONCURRENCY clients complete), then offers a fixed rate (default 80% of that capacity) for
DURATION seconds, open loop: requests are scheduled at fixed times and latency is counted from
the scheduled time, so a stalled server shows up in p99 instead of slowing the load down. Every
WINDOW seconds it records throughput, p50/p99 and errors, and every second the resident memory
(RSS) of the server's processes (psutil, the process and its children).

Without --url it starts `prescreen serve` itself on a fresh SQLite database (or
--database-url) with a bank of --entries PDQ hashes, and watches that process tree.

    python bench/load.py --quick                 # ~1 minute: 10 s capacity, 30 s load
    python bench/load.py --duration 600 --json   # the 10-minute run, one JSON object
    python bench/load.py --url http://host:8000 --key psk_... --pid 1234 --pid 1240
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image, ImageDraw

PRESCREEN = str(Path(sys.executable).with_name("prescreen"))
BANK = f"load-terror-{int(time.time())}"
MIX = (("image", 0.4), ("text", 0.3), ("lookup", 0.3))
TEXTS = (
    "Join the livestream tonight, we are discussing the new album",
    "The council voted to extend the library opening hours next year",
    "Breaking: reporters covered the trial of the attack's organisers today",
    "Our community stands together against hate in every form",
    "Selling two concert tickets, message me if you are interested",
    "A long thread about the history of the city's bridges and tunnels",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def make_images(count: int, seed: int) -> list[bytes]:
    """Varied 640x480 JPEGs (colour fields, shapes, grain), so hashes and sizes spread."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 15))):
            x, y = int(rng.integers(0, 600)), int(rng.integers(0, 440))
            size = int(rng.integers(20, 300))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.rectangle((x, y, x + size, y + size // 2), fill=fill)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (480, 640, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
        images.append(buffer.getvalue())
    return images


def random_pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def near(hex_hash: str, bits: int, rng: random.Random) -> str:
    flips = sum(1 << p for p in rng.sample(range(256), bits))
    return f"{int(hex_hash, 16) ^ flips:064x}"


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [PRESCREEN, *args], env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"prescreen {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class LocalServer:
    """`prescreen serve` on a fresh database, with a bank and an admin key."""

    process: subprocess.Popen
    url: str
    key: str
    workdir: Path

    @classmethod
    def start(cls, args: argparse.Namespace, bank_hashes: list[str]) -> LocalServer:
        workdir = Path(tempfile.mkdtemp(prefix="prescreen-load-"))
        database = args.database_url or f"sqlite:///{workdir / 'prescreen.db'}"
        port = free_port()
        env = {**os.environ, "PRESCREEN_DATABASE_URL": database, "PRESCREEN_DATA_DIR": str(workdir)}
        env |= {"PRESCREEN_LOG_LEVEL": "WARNING", "PRESCREEN_PORT": str(port)}
        key = json.loads(cli(env, "apikey", "create", "--role", "admin", "--name", "load"))["key"]
        cli(env, "bank", "create", BANK, "--label", "terrorism")
        bank_file = workdir / "bank.ndjson"
        with bank_file.open("w") as handle:
            for value in bank_hashes:
                handle.write(json.dumps({"signals": {"pdq": value}}) + "\n")
        started = time.perf_counter()
        cli(env, "bank", "import", BANK, str(bank_file), "--format", "ndjson")
        seconds = time.perf_counter() - started
        log(f"bank of {len(bank_hashes):,} hashes imported in {seconds:.1f} s")
        command = [PRESCREEN, "serve", "--port", str(port)]
        if args.server_workers:
            command += ["--workers", str(args.server_workers)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        server = cls(process, f"http://127.0.0.1:{port}", key, workdir)
        server.wait_ready()
        return server

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit("the server was not ready in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- load


class RequestMaker:
    """The next request of the mix; thread-safe enough (each call uses its own random draw)."""

    def __init__(self, images: list[bytes], bank_hashes: list[str], seed: int) -> None:
        self.images, self.bank_hashes = images, bank_hashes
        self.rng = random.Random(seed)
        self.counter = 0
        self.lock = threading.Lock()
        self.run_id = f"{int(time.time())}-{os.getpid()}"

    def next(self) -> tuple[str, dict[str, Any]]:
        with self.lock:
            self.counter += 1
            n, draw, pick = self.counter, self.rng.random(), self.rng.random()
            kind = next(name for name, share in _cumulative(MIX) if draw < share)
            content_id = f"load-{self.run_id}-{n}"
            if kind == "image":
                image = self.images[n % len(self.images)]
                files = {"file": ("upload.jpg", image, "image/jpeg")}
                fields = {"content_id": content_id}
                return kind, {"url": "/v1/screen", "files": files, "data": fields}
            if kind == "text":
                text = f"{TEXTS[n % len(TEXTS)]} #{n}"
                return kind, {"url": "/v1/screen", "json": {"text": text, "content_id": content_id}}
            target = self.bank_hashes[int(pick * len(self.bank_hashes))]
            value = near(target, 8, self.rng) if pick < 0.5 else random_pdq(self.rng)
            return kind, {"url": "/v1/lookup", "json": {"signals": {"pdq": value}}}


def _cumulative(mix):
    total = 0.0
    for name, share in mix:
        total += share
        yield name, total


@dataclass
class Sample:
    kind: str
    scheduled: float
    finished: float
    ok: bool

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.scheduled) * 1000


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


def send(client: httpx.Client, maker: RequestMaker, recorder: Recorder, scheduled: float) -> None:
    kind, request = maker.next()
    url = request.pop("url")
    try:
        response = client.post(url, **request)
        ok = response.status_code == 200
    except httpx.HTTPError:
        ok = False
    recorder.add(Sample(kind, scheduled, time.monotonic(), ok))


def closed_loop(url: str, key: str, maker: RequestMaker, clients: int, seconds: float) -> float:
    """Requests/s that `clients` back-to-back clients complete: the capacity."""
    recorder, stop = Recorder(), time.monotonic() + seconds

    def client_loop() -> None:
        with _client(url, key) as client:
            while time.monotonic() < stop:
                send(client, maker, recorder, time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    good = sum(1 for s in recorder.samples if s.ok)
    return good / (time.monotonic() - started)


def open_loop(
    url: str, key: str, maker: RequestMaker, rate: float, seconds: float, clients: int
) -> Recorder:
    """`rate` requests/s at fixed times for `seconds`, served by a pool of `clients`."""
    recorder = Recorder()
    due: queue.Queue[float | None] = queue.Queue()

    def client_loop() -> None:
        with _client(url, key) as client:
            while (scheduled := due.get()) is not None:
                send(client, maker, recorder, scheduled)

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        scheduled = start + n / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        due.put(scheduled)
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join(timeout=60)
    return recorder


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


class MemoryWatch:
    """Resident memory of the server's processes (and their children), once a second."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def rss(self) -> int:
        total = 0
        for root in self.roots:
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # it exited meanwhile
                    total += process.memory_info().rss
        return total

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.points.append((time.monotonic(), self.rss()))
            self._stop.wait(1.0)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------- report


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def windows(samples: list[Sample], start: float, width: float, memory) -> list[dict[str, Any]]:
    """Per window of `width` seconds (by scheduled time): throughput, latency, errors, RSS."""
    rows: list[dict[str, Any]] = []
    end = max((s.scheduled for s in samples), default=start)
    at = start
    while at <= end:
        part = [s for s in samples if at <= s.scheduled < at + width]
        rss = [value for t, value in memory if at <= t < at + width]
        latencies = [s.latency_ms for s in part if s.ok]
        rows.append({
            "t_s": round(at - start),
            "requests_per_s": round(sum(1 for s in part if s.ok) / width, 1),
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
            "errors": sum(1 for s in part if not s.ok),
            "rss_mib": round(max(rss) / 2**20, 1) if rss else None,
        })  # fmt: skip
        at += width
    return rows


def summarise(
    recorder: Recorder, memory: list[tuple[float, int]], start: float, args, capacity: float
) -> dict[str, Any]:
    samples = recorder.samples
    ok = [s.latency_ms for s in samples if s.ok]
    warm = start + args.duration * args.warmup
    steady_rss = [value for t, value in memory if t >= warm]
    by_window = windows(samples, start, args.window, memory)
    steady_windows = [w for w in by_window if w["t_s"] >= args.duration * args.warmup]
    window_p99 = [w["p99_ms"] for w in steady_windows if w["p99_ms"] is not None]
    # "Steady": the judged period's two halves, each over all its requests (a window's p99
    # rests on its few slowest requests), and the trend of the window p99s.
    middle = (warm + start + args.duration) / 2
    halves = [
        [s.latency_ms for s in samples if s.ok and lo <= s.scheduled < hi]
        for lo, hi in ((warm, middle), (middle, start + args.duration))
    ]
    trend = (
        statistics.linear_regression(
            [w["t_s"] / 60 for w in steady_windows if w["p99_ms"] is not None], window_p99
        ).slope
        if len(window_p99) > 1
        else None
    )
    by_kind = {
        kind: {
            "requests": sum(1 for s in samples if s.kind == kind),
            "p50_ms": percentile([s.latency_ms for s in samples if s.kind == kind and s.ok], 0.5),
            "p99_ms": percentile([s.latency_ms for s in samples if s.kind == kind and s.ok], 0.99),
        }
        for kind, _share in MIX
    }
    growth = (
        (max(steady_rss) - steady_rss[0]) / steady_rss[0] * 100 if len(steady_rss) > 1 else None
    )
    return {
        "capacity_rps": round(capacity, 1),
        "offered_rps": round(capacity * args.load, 1),
        "duration_s": args.duration,
        "requests": len(samples),
        "errors": sum(1 for s in samples if not s.ok),
        "throughput_rps": round(len(ok) / args.duration, 1),
        "p50_ms": percentile(ok, 0.5),
        "p99_ms": percentile(ok, 0.99),
        "by_kind": by_kind,
        "p99_window_median_ms": round(statistics.median(window_p99), 1) if window_p99 else None,
        "p99_window_max_ms": max(window_p99) if window_p99 else None,
        "p99_halves_ms": [percentile(half, 0.99) for half in halves],
        "p99_window_trend_ms_per_min": round(trend, 1) if trend is not None else None,
        "rss_start_mib": round(steady_rss[0] / 2**20, 1) if steady_rss else None,
        "rss_max_mib": round(max(steady_rss) / 2**20, 1) if steady_rss else None,
        "rss_growth_after_warmup_pct": round(growth, 1) if growth is not None else None,
        "windows": by_window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="A running server (default: start one)")
    parser.add_argument("--key", help="API key for --url (integrator or admin role)")
    parser.add_argument("--pid", type=int, action="append", default=[], help="Server process")
    parser.add_argument("--database-url", help="For the server this starts (default: SQLite)")
    parser.add_argument("--server-workers", type=int, default=0, help="`serve --workers`")
    parser.add_argument("--entries", type=int, default=100_000, help="Bank size it creates")
    parser.add_argument("--duration", type=float, default=600.0, help="Seconds of steady load")
    parser.add_argument("--capacity-seconds", type=float, default=30.0)
    parser.add_argument("--capacity", type=float, help="Skip measuring; requests/s")
    parser.add_argument("--load", type=float, default=0.8, help="Share of capacity offered")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent connections")
    parser.add_argument("--window", type=float, default=30.0, help="Seconds per report row")
    parser.add_argument("--warmup", type=float, default=0.2, help="Share of the run not judged")
    parser.add_argument("--quick", action="store_true", help="10k entries, 10 s + 30 s")
    parser.add_argument("--json", action="store_true", help="One JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.capacity_seconds = min(args.entries, 10_000), 10.0
        args.duration, args.window = min(args.duration, 30.0), 5.0
    rng = random.Random(7)
    bank_hashes = [random_pdq(rng) for _ in range(args.entries)]
    images = make_images(40, seed=7)
    server = None
    if args.url:
        if not args.key:
            raise SystemExit("--url needs --key")
        url, key, pids = args.url, args.key, args.pid
    else:
        server = LocalServer.start(args, bank_hashes)
        url, key, pids = server.url, server.key, [server.process.pid]
    try:
        maker = RequestMaker(images, bank_hashes, seed=11)
        capacity = args.capacity or closed_loop(
            url, key, maker, args.clients, args.capacity_seconds
        )
        log(f"capacity {capacity:.1f} requests/s; offering {args.load:.0%} for {args.duration} s")
        with MemoryWatch(pids) as memory:
            start = time.monotonic()
            recorder = open_loop(url, key, maker, capacity * args.load, args.duration, args.clients)
        report = summarise(recorder, memory.points, start, args, capacity)
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps(report))
        return
    for row in report.pop("windows"):
        log(json.dumps(row))
    log(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
