"""A platform's webhook endpoint for tests: a local HTTP server that records every delivery."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class WebhookReceiver(BaseHTTPRequestHandler):
    """Records each POST (headers, body); answers 500 to the first `fail_first`, then 200."""

    received: list[tuple[dict, bytes]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = 500 if len(type(self).received) <= type(self).fail_first else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass
