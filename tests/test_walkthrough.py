"""The README walkthrough, run as a new user would: a real server process, the real CLI, HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "prescreen.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def server(db, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PRESCREEN_DATABASE_URL": db.url,
        "PRESCREEN_PORT": str(port),
        "PRESCREEN_DATA_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "prescreen.cli", "serve"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        else:
            pytest.fail("server did not become ready in 60 s")
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_readme_walkthrough(server) -> None:
    base, env = server
    key = _cli(env, "apikey", "create", "--role", "admin", "--name", "walkthrough")["key"]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        created = http.post("/v1/banks", json={"name": "terror-demo", "labels": ["terrorism"]})
        assert created.status_code == 201, created.text
        with (EXAMPLES / "original.jpg").open("rb") as f:
            added = http.post(
                "/v1/banks/terror-demo/content", files={"file": f}, data={"labels": "terrorism"}
            )
        assert added.status_code == 201, added.text

        def screen(name: str, content_id: str) -> dict:
            with (EXAMPLES / name).open("rb") as f:
                response = http.post(
                    "/v1/screen", files={"file": f}, data={"content_id": content_id}
                )
            assert response.status_code == 200, response.text
            return response.json()

        caught = screen("edited.jpg", "upload-1")
        assert caught["decision"] == "block"
        assert caught["matches"][0]["bank"] == "terror-demo"
        assert caught["matches"][0]["label"] == "terrorism"
        assert screen("unrelated.jpg", "upload-2")["decision"] == "allow"

        # A bank changed from the CLI (another process) is matched by the running server.
        _cli(env, "bank", "create", "cli-bank", "--kind", "hold")
        _cli(env, "bank", "add", "cli-bank", str(EXAMPLES / "unrelated.jpg"))
        assert screen("unrelated.jpg", "upload-3")["decision"] == "hold"
        metrics = http.get("/metrics").text
        assert 'prescreen_decisions_total{outcome="block"} 1.0' in metrics
