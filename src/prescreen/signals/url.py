"""URL canonicalisation and the canonical-URL signal.

The same link is shared with different case, ports, tracking parameters and fragments; the
canonical form removes those so one bank entry matches them all. Nothing here fetches the URL.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from prescreen.core.errors import InvalidInput
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.registry import register

DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid",
        "mc_eid", "_ga", "_gl", "ref_src", "ref_url", "si", "s_cid", "mkt_tok", "oly_anon_id",
        "oly_enc_id", "vero_id", "__s", "twclid", "ttclid", "li_fat_id",
    }
)  # fmt: skip
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"


def canonical_url(raw: str) -> str:
    """Canonical http(s) URL: lower-case scheme and host, IDNA host, no default port, no `www.`,
    no fragment, no tracking parameters, sorted query, normalised percent-encoding."""
    raw = raw.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"only http and https URLs are supported, not {scheme!r}")
    host = _canonical_host(parts.hostname or "")
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(unquote(parts.path), safe=_SAFE_PATH) or "/"
    path = re.sub(r"/{2,}", "/", path)
    query = urlencode(sorted(_kept_params(parts.query)), doseq=True)
    return urlunsplit((scheme, netloc, path, query, ""))


def _canonical_host(host: str) -> str:
    host = host.strip(".").lower()
    if not host:
        raise InvalidInput("the URL has no host")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInput(f"the URL's host is not a valid domain name: {exc}") from exc
    return host.removeprefix("www.")


def _kept_params(query: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, value in parse_qsl(query, keep_blank_values=True)
        if not key.lower().startswith("utm_") and key.lower() not in TRACKING_PARAMS
    ]


@register
class URLSignal(SignalType):
    """The canonical URL itself, matched exactly."""

    name = "url"
    kinds = frozenset({ContentKind.url})

    def compute(self, upload: Upload) -> dict[str, Any]:
        return {"url": canonical_url(upload.text or "")}

    def normalize(self, value: str) -> str:
        return canonical_url(str(value))
