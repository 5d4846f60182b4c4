"""Screening throughput over HTTP: prescreen's server, started as a user starts it, against a
bank of N PDQ hashes with planted matches.

The bench creates a bank of N random PDQ hashes plus the hashes of some of its generated 2 MP
JPEGs (16% of the uploads it sends match), imports it with `prescreen bank import` (timed, index
included), starts `prescreen serve` with its default worker count, and then drives
`POST /v1/screen` (multipart JPEG uploads, each with a fresh content id) and `POST /v1/lookup`
(a PDQ hash) at each concurrency for a bounded time. It reports requests/s, p50/p99 latency,
errors, wrong outcomes (a planted image not blocked, another one blocked) and the resident
memory of all the server's processes (RSS, and PSS, which counts shared pages once): idle
(`memory_idle`), the highest after a run (`memory_max`), and a few seconds after the last run
(`memory_quiet`). Before the measured runs it waits for the server's background retro-scan of
the imported entries (a one-off job, reported as `retroscan_s`), so that the runs measure
screening alone. The bench hashes its planted images with `prescreen hash` in a child process:
hashed here, the compiler's library code would be mapped in this process too, and pages it
shares with the server's parent are pages the parent cannot give back.

    python bench/http_screen.py --quick --json    # 100k hashes, 8 s per run
    python bench/http_screen.py                   # 1M hashes, 30 s per run
    python bench/http_screen.py --media-steps off # without OCR and logo search (as HMA)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = (1632, 1224)  # 2.0 MP
IMAGES = 100
PLANTED = 16  # of IMAGES: 16% of uploads match
BANK = "bench-terror"
QUIET_S = 3.0  # a worker trims its heap once it has had no request for a second
PRESCREEN = str(Path(sys.executable).with_name("prescreen"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def photo_like(rng: np.random.Generator) -> Image.Image:
    """A varied 2 MP picture: smooth colour fields, shapes, text-like strokes and grain, so
    JPEG sizes and PDQ hashes spread like real uploads'."""
    w, h = IMAGE_SIZE
    small = rng.integers(0, 256, size=(6 + rng.integers(0, 10), 8 + rng.integers(0, 12), 3))
    base = Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(5, 40))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(2, 30)))
    image = base.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 3))))
    grain = rng.normal(0, float(rng.uniform(2, 12)), size=(h, w, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def make_images(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(IMAGES):
        buf = io.BytesIO()
        photo_like(rng).save(buf, "JPEG", quality=int(rng.integers(75, 93)))
        out.append(buf.getvalue())
    return out


def pdq_hashes(env: dict[str, str], images: list[bytes], folder: Path) -> list[str]:
    """The PDQ hash of each image, from `prescreen hash` as a user would compute them. Not in
    this process: hashing here would map the compiler's library pages into it, and the server's
    parent could then not give back its own (they count in the server's memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(images):
        paths.append(folder / f"{i:03d}.jpg")
        paths[-1].write_bytes(data)
    lines = cli(env, "hash", *map(str, paths)).splitlines()
    by_path = {row["path"]: row["signals"]["pdq"] for row in map(json.loads, lines)}
    return [by_path[str(path)] for path in paths]


def write_bank_file(path: Path, n: int, planted: list[str], seed: int) -> None:
    """N lines of prescreen NDJSON: random PDQ hashes with the planted ones spread among them."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n - len(planted), 32), dtype=np.uint8)
    at = set(rng.choice(n, size=len(planted), replace=False).tolist())
    planted_iter = iter(planted)
    with path.open("w") as f:
        f.write(json.dumps({"format": "prescreen-bank/1"}) + "\n")
        rows = iter(codes)
        for i in range(n):
            pdq = next(planted_iter) if i in at else next(rows).tobytes().hex()
            f.write(json.dumps({"signals": {"pdq": pdq}, "labels": ["terrorism"]}) + "\n")


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PRESCREEN, *args],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"prescreen {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not stopped within 30 s."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def wait_retroscanned(url: str, key: str, entries: int, timeout: float) -> float:
    """Seconds until the server's background retro-scan has gone through the imported entries
    (it starts with the server and scans them once against stored content): measured runs then
    see screening alone, and the one-off scan is reported on its own."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        runs = httpx.get(
            f"{url}/v1/retroscans", params={"limit": 1000}, timeout=10,
            headers={"authorization": f"Bearer {key}"},
        ).json()["runs"]  # fmt: skip
        if sum(run["entries"] for run in runs if run["finished_at"]) >= entries:
            return time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit("the retro-scan of the imported entries did not finish")


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time used so far by the server and by each process under it, by pid."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    spent = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        spent[proc.pid] = times.user + times.system
    return spent


def memory_mb(pid: int) -> dict[str, Any]:
    """RSS and PSS of the server and every process under it (PSS counts shared pages once)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0, "pss_mb_each": []}
    rss = 0
    each = []
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        each.append(getattr(info, "pss", info.rss))
    mb = 1024 * 1024
    return {
        "rss_mb": round(rss / mb, 1),
        "pss_mb": round(sum(each) / mb, 1),
        "processes": len(procs),
        # the parent first, then its workers: which one holds what, when a run differs
        "pss_mb_each": [round(value / mb, 1) for value in each],
    }


# ----------------------------------------------------------------------------- load


class Connection:
    """A lean HTTP/1.1 keep-alive client: requests are prepared bytes and responses are read by
    Content-Length, so the load generator spends far less CPU per request than the server it
    measures (a general-purpose client costs about as much as a lookup itself)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def http_request(path: str, key: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def screen_request(key: str, image: bytes, content_id: str) -> bytes:
    boundary = "prescreenbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content_id"\r\n\r\n'
            f"{content_id}\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="upload.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return http_request("/v1/screen", key, body, f"multipart/form-data; boundary={boundary}")


def lookup_request(key: str, pdq: str) -> bytes:
    body = json.dumps({"signals": {"pdq": pdq}}).encode()
    return http_request("/v1/lookup", key, body, "application/json")


async def drive(
    port: int,
    key: str,
    mode: str,
    concurrency: int,
    seconds: float,
    images: list[bytes],
    planted: set[int],
    pdqs: list[str],
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = wrong = 0
    deadline = time.perf_counter() + seconds
    lookups = [lookup_request(key, pdq) for pdq in pdqs]
    run_id = f"{time.time_ns():x}"

    async def one(worker: int) -> None:
        nonlocal errors, wrong
        connection, i = Connection(port), worker
        try:
            while time.perf_counter() < deadline:
                n = i % len(images)
                if mode == "screen":
                    raw = screen_request(key, images[n], f"{run_id}-{worker}-{i}")
                else:
                    raw = lookups[n]
                i += concurrency
                start = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(connection.request(raw), 30)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    errors += 1
                    connection.close()
                    connection = Connection(port)
                    continue
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1
                elif mode == "screen":
                    wrong += (json.loads(body)["decision"] == "block") != (n in planted)
                else:
                    wrong += bool(json.loads(body)["matches"]) != (n in planted)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
        "wrong": wrong,
    }


def run_level(pid: int, port: int, key: str, mode: str, level: int, seconds: float, data) -> dict:
    """A short warm-up, then the measured run, with the server's CPU time per request."""
    asyncio.run(drive(port, key, mode, level, min(2.0, seconds / 4), *data))
    before = cpu_seconds(pid)
    run = asyncio.run(drive(port, key, mode, level, seconds, *data))
    spent = {p: s - before.get(p, 0.0) for p, s in cpu_seconds(pid).items()}
    run["server_cpu_ms"] = round(sum(spent.values()) * 1000 / max(run["requests"], 1), 2)
    # how evenly the workers shared the load (the parent, and any process that is not a
    # worker, are left out)
    run["worker_cpu_s"] = sorted(round(s, 1) for p, s in spent.items() if p != pid and s > 0.05)
    run["memory"] = memory_mb(pid)
    return run


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k hashes, 8 s per run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--hashes", type=int, help="bank size (default 1M, quick 100k)")
    parser.add_argument("--seconds", type=float, help="measured seconds per run")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    parser.add_argument("--workers", type=int, help="server worker processes (default: its own)")
    parser.add_argument("--keep", help="keep the bench's data in this folder")
    parser.add_argument(
        "--media-steps", choices=("on", "off"), default="on",
        help="OCR and logo steps (on, the default service, or off: hash and match only)",
    )  # fmt: skip
    args = parser.parse_args()
    n = args.hashes or (100_000 if args.quick else 1_000_000)
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    levels = [int(c) for c in args.concurrency.split(",")]

    root = Path(args.keep or tempfile.mkdtemp(prefix="prescreen-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PRESCREEN_DATABASE_URL": f"sqlite:///{root / 'prescreen.db'}",
        "PRESCREEN_DATA_DIR": str(root / "data"),
        "PRESCREEN_LOG_LEVEL": "WARNING",
        "PRESCREEN_OCR_ENABLED": str(args.media_steps == "on").lower(),
        "PRESCREEN_LOGO_ENABLED": str(args.media_steps == "on").lower(),
        # Each planted image is sent hundreds of times an hour; the flood guard would quarantine
        # its entry (hold instead of block) once that beats the entry's usual rate, as it should
        # for a poisoned shared entry. The bench measures screening, so it sets the guard aside.
        "PRESCREEN_EXCHANGE_FLOOD_MIN_MATCHES": "1000000000",
    }
    log(f"generating {IMAGES} 2 MP JPEGs and a bank of {n:,} hashes in {root}")
    images = make_images(seed=7)
    pdqs = pdq_hashes(env, images, root / "images")
    planted = set(range(PLANTED))
    bank_file = root / "bank.ndjson"
    write_bank_file(bank_file, n, [pdqs[i] for i in sorted(planted)], seed=11)

    cli(env, "bank", "create", BANK, "--label", "terrorism", "--kind", "block")
    started = time.perf_counter()
    cli(env, "bank", "import", BANK, str(bank_file))
    import_s = time.perf_counter() - started
    log(f"import of {n:,} hashes, index included: {import_s:.1f} s")
    key = json.loads(cli(env, "apikey", "create", "--role", "integrator", "--name", "bench"))["key"]
    auditor = json.loads(
        cli(env, "apikey", "create", "--role", "auditor", "--name", "bench-auditor")
    )["key"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [PRESCREEN, "serve", "--port", str(port)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, start_new_session=True)
    results: dict[str, Any] = {
        "hashes": n, "import_s": round(import_s, 1), "media_steps": args.media_steps
    }  # fmt: skip
    try:
        wait_ready(url, server, timeout=600)
        results["startup_s"] = round(time.perf_counter() - started, 1)
        results["retroscan_s"] = round(wait_retroscanned(url, auditor, n, timeout=900), 1)
        log(f"retro-scan of the {n:,} imported entries: {results['retroscan_s']} s after ready")
        results["memory_idle"] = memory_mb(server.pid)
        data = (images, planted, pdqs)
        runs: dict[str, dict[str, Any]] = {}
        for mode in ("screen", "lookup"):
            for level in levels:
                run = run_level(server.pid, port, key, mode, level, seconds, data)
                runs[f"{mode}_c{level}"] = run
                log(f"{mode:6} c={level:<3} {json.dumps(run)}")
        results["runs"] = runs
        results["memory_max"] = {
            k: max(r["memory"][k] for r in runs.values()) for k in ("rss_mb", "pss_mb")
        }
        time.sleep(QUIET_S)
        results["memory_quiet"] = memory_mb(server.pid)
        log(f"memory {QUIET_S:.0f} s after the last run: {json.dumps(results['memory_quiet'])}")
    finally:
        stop_server(server)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
    else:
        log(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
