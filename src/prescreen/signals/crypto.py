"""Cryptographic digests of the uploaded bytes: exact copies only, but free to compute."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from prescreen.core.errors import InvalidInput
from prescreen.signals.base import ContentKind, SignalType, Upload
from prescreen.signals.registry import register


class DigestSignal(SignalType):
    """A hex digest of the raw bytes; subclasses name the algorithm."""

    kinds = frozenset({ContentKind.photo, ContentKind.video})
    algorithm: str
    hex_length: int

    def compute(self, upload: Upload) -> dict[str, Any]:
        return {self.name: hashlib.new(self.algorithm, upload.data or b"").hexdigest()}

    def normalize(self, value: str) -> str:
        value = str(value).strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{self.hex_length}}}", value):
            raise InvalidInput(
                f"a {self.name} hash must be exactly {self.hex_length} hex digits",
                signal_type=self.name,
                value=value[:80],
            )
        return value


@register
class MD5Signal(DigestSignal):
    name = "md5"
    algorithm = "md5"
    hex_length = 32


@register
class SHA256Signal(DigestSignal):
    name = "sha256"
    algorithm = "sha256"
    hex_length = 64
