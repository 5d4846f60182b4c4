"""Real `prescreen serve` and `prescreen worker` processes for the scale-out tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(db_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a process of this deployment (`PRESCREEN_` + upper-case names)."""
    env = {**os.environ, "PRESCREEN_DATABASE_URL": db_url, "PRESCREEN_DATA_DIR": str(data_dir)}
    env |= {"PRESCREEN_LOG_JSON": "true", "PRESCREEN_LOG_LEVEL": "WARNING"}
    return env | {f"PRESCREEN_{name.upper()}": value for name, value in settings.items()}


class Server:
    """One `prescreen serve` process on its own port."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = (data_dir / f"server-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prescreen.cli", "serve", "--port", str(self.port)],
            env={**env, "PRESCREEN_DATA_DIR": str(data_dir)},
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, Path(self.log.name).read_text()[-3000:]
            time.sleep(0.2)
        pytest.fail(f"server on port {self.port} was not ready in {timeout} s")

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class JobWorker:
    """One `prescreen worker` process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prescreen.cli", "worker"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
