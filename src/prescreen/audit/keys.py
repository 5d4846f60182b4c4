"""The log's Ed25519 signing key: from PRESCREEN_AUDIT_SIGNING_KEY (base64 of the 32 raw bytes),
or generated at first use into DATA_DIR/audit_signing_key with mode 0600. It is never logged;
only its public half leaves the process."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from prescreen.audit.logformat import key_id
from prescreen.core.config import Settings

KEY_FILE = "audit_signing_key"
_cache: dict[str, Ed25519PrivateKey] = {}
_lock = threading.Lock()


class SigningKeyError(RuntimeError):
    pass


def _parse(text: str, where: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise SigningKeyError(f"{where} is not base64") from exc
    if len(raw) != 32:
        raise SigningKeyError(f"{where} must be the 32 raw bytes of an Ed25519 key, base64")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _create(path: Path) -> None:
    """Write a new key atomically: a private temporary file, then a hard link that fails if
    another process created the key first (so nobody ever reads a half-written key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    configured = settings.audit_signing_key
    if configured is not None:
        value = configured.get_secret_value()
        cache_key = "config:" + key_id(value.encode())
        with _lock:
            if cache_key not in _cache:
                _cache[cache_key] = _parse(value, "PRESCREEN_AUDIT_SIGNING_KEY")
            return _cache[cache_key]
    path = (Path(settings.data_dir) / KEY_FILE).resolve()
    cache_key = f"file:{path}"
    with _lock:
        if cache_key in _cache and path.exists():
            return _cache[cache_key]
        if not path.exists():
            _create(path)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        _cache[cache_key] = _parse(path.read_text(), str(path))
        return _cache[cache_key]


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
