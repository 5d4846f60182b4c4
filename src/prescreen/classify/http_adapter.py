"""A classifier backed by an external moderation endpoint, guarded by timeouts and a circuit
breaker so that a slow or failing model never stalls screening.

Request (the shape common moderation APIs accept)::

    POST <url>   {"input": ["text 1", "text 2"], "model": "<model, if configured>"}

Response: `{"results": [{"category_scores": {"hate": 0.91, "violence": 0.02, ...}}, ...]}`, one
result per input in order. `categories` or `scores` holding numbers are read the same way, and a
bare list of such results is accepted too. Categories are mapped to heads with `head_map`
(`{"hate": ["hate", "hate/threatening"]}` takes the larger of the two); without a map every
category the endpoint returns is passed through as a head.

The breaker opens after `failure_threshold` consecutive failures (errors, timeouts, bad
responses); while open, `score` raises `ClassifierUnavailable` at once, without a request. After
`cooldown_s` it lets one trial request through (half-open): success closes it, failure opens it
for another cool-down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import httpx

from prescreen.classify.base import BaseClassifier, ClassifierUnavailable

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a cool-down -> closed."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one trial at a time."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


class HttpModerationClassifier(BaseClassifier):
    """Scores texts by calling a moderation HTTP endpoint."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "http",
        version: str = "external",
        heads: Sequence[str] | None = None,
        head_map: Mapping[str, Sequence[str]] | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 1.0,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        max_batch: int = 32,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.name = name
        self.version = version
        self.head_map = {h: list(c) for h, c in (head_map or {}).items()}
        self.heads = tuple(heads or self.head_map)
        self.model = model
        self.max_batch = max_batch
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        request_headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            request_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), headers=request_headers, transport=transport,
            follow_redirects=False,
        )  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for start in range(0, len(texts), self.max_batch):
            out.extend(self._score_batch(list(texts[start : start + self.max_batch])))
        return out

    def _score_batch(self, texts: list[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        if not self.breaker.allow():
            raise ClassifierUnavailable(f"{self.name}: circuit open")
        body: dict[str, Any] = {"input": texts}
        if self.model:
            body["model"] = self.model
        try:
            response = self._client.post(self.url, json=body)
            response.raise_for_status()
            results = self._parse(response.json(), len(texts))
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            self.breaker.record_failure()
            raise ClassifierUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        self.breaker.record_success()
        return results

    def _parse(self, payload: Any, expected: int) -> list[dict[str, float]]:
        results = payload.get("results") if isinstance(payload, dict) else payload
        if not isinstance(results, list) or len(results) != expected:
            raise ValueError("response does not hold one result per input")
        return [self._heads_from(_category_scores(result)) for result in results]

    def _heads_from(self, categories: dict[str, float]) -> dict[str, float]:
        if not self.head_map:
            return categories
        scores = {}
        for head, names in self.head_map.items():
            found = [categories[n] for n in names if n in categories]
            scores[head] = max(found) if found else 0.0
        return scores


def _category_scores(result: Any) -> dict[str, float]:
    if not isinstance(result, dict):
        raise ValueError("a result is not an object")
    for key in ("category_scores", "scores", "categories"):
        value = result.get(key)
        if isinstance(value, dict) and value:
            numeric = {
                str(k): float(v) for k, v in value.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }  # fmt: skip
            if numeric:
                return {k: min(1.0, max(0.0, v)) for k, v in numeric.items()}
    raise ValueError("a result has no category scores")
