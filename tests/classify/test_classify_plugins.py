"""The classifier plug-in interface, its entry-point registry and the HTTP adapter."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from prescreen.classify import base
from prescreen.classify.base import (
    BaseClassifier,
    Classifier,
    ClassifierUnavailable,
    safe_score,
)
from prescreen.classify.http_adapter import CircuitBreaker, HttpModerationClassifier


class Echo(BaseClassifier):
    name = "echo"
    heads = ("spam",)
    version = "1"

    def score(self, texts):
        return [{"spam": min(1.0, len(t) / 100)} for t in texts]


def test_protocol_and_safe_score() -> None:
    echo = Echo()
    assert isinstance(echo, Classifier)
    result = safe_score(echo, ["a" * 50])
    assert result.status == "ok" and result.scores == [{"spam": 0.5}]

    class Broken(Echo):
        def score(self, texts):
            raise RuntimeError("boom")

    broken = safe_score(Broken(), ["x"])
    assert broken.status == "unavailable" and broken.error == "RuntimeError"


def test_entry_point_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        SimpleNamespace(name="echo", load=lambda: Echo),  # a class
        SimpleNamespace(name="bad", load=lambda: object()),  # not a classifier: skipped
        SimpleNamespace(name="boom", load=lambda: (_ for _ in ()).throw(ImportError("x"))),
    ]
    monkeypatch.setattr(
        base, "entry_points", lambda group: eps if group == base.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setattr(base, "_registry", {})
    base.load_plugins(force=True)
    found = base.all_classifiers()
    assert set(found) == {"echo", "prescreen-text"}
    assert base.get("echo").score(["hi"]) == [{"spam": 0.02}]
    with pytest.raises(KeyError):
        base.get("missing")


# --- HTTP adapter against a local server -------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    mode = "ok"
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "slow":
            time.sleep(1.0)
        if self.mode == "error":
            self.send_response(503)
            self.end_headers()
            return
        results = [
            {"flagged": "hate" in t, "categories": {"hate": "hate" in t},
             "category_scores": {"hate": 0.9 if "hate" in t else 0.1, "violence": 0.3}}
            for t in body["input"]
        ]  # fmt: skip
        payload = json.dumps({"id": "x", "model": body.get("model"), "results": results}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    Handler.mode, Handler.calls = "ok", 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/moderations"
    httpd.shutdown()
    httpd.server_close()


def test_http_adapter_maps_categories_to_heads(server: str) -> None:
    clf = HttpModerationClassifier(
        server, head_map={"hate": ["hate", "hate/threatening"], "terrorism": ["extremism"]},
        max_batch=2,
    )  # fmt: skip
    assert clf.heads == ("hate", "terrorism")
    scores = clf.score(["i hate them", "nice day", "hate again"])
    assert scores == [{"hate": 0.9, "terrorism": 0.0}, {"hate": 0.1, "terrorism": 0.0},
                      {"hate": 0.9, "terrorism": 0.0}]  # fmt: skip
    assert Handler.calls == 2  # batched
    passthrough = HttpModerationClassifier(server).score(["x"])
    assert passthrough == [{"hate": 0.1, "violence": 0.3}]


def test_timeouts_open_the_circuit_and_it_recovers(server: str) -> None:
    now = [0.0]
    clf = HttpModerationClassifier(
        server, timeout_s=0.2, failure_threshold=2, cooldown_s=30, clock=lambda: now[0]
    )
    Handler.mode = "slow"
    for _ in range(2):
        started = time.perf_counter()
        with pytest.raises(ClassifierUnavailable):
            clf.score(["x"])
        assert time.perf_counter() - started < 0.9  # the timeout, not the server, decides
    assert clf.breaker.state == "open"
    calls = Handler.calls
    started = time.perf_counter()
    result = safe_score(clf, ["x"])
    assert result.status == "unavailable" and "circuit open" in (result.error or "")
    assert time.perf_counter() - started < 0.05 and Handler.calls == calls  # no request made

    now[0] += 31  # cool-down over: one trial request
    assert clf.breaker.state == "half_open"
    Handler.mode = "error"
    with pytest.raises(ClassifierUnavailable):
        clf.score(["x"])
    assert clf.breaker.state == "open"  # the failed trial re-opens at once
    now[0] += 31
    Handler.mode = "ok"
    assert clf.score(["hate"]) == [{"hate": 0.9, "violence": 0.3}]
    assert clf.breaker.state == "closed"


def test_malformed_responses_count_as_failures(server: str) -> None:
    import httpx

    def bad(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": [{"flagged": True}]})

    clf = HttpModerationClassifier(server, transport=httpx.MockTransport(bad), failure_threshold=1)
    with pytest.raises(ClassifierUnavailable):
        clf.score(["x"])
    assert clf.breaker.state == "open"


def test_breaker_half_open_allows_one_trial_at_a_time() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 5
    assert breaker.allow() and not breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
