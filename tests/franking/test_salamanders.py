"""Invisible Salamanders: AES-GCM does not commit to its key, so one ciphertext and tag can
decrypt validly under two keys to two different plaintexts. We build such a ciphertext here
(solving the GHASH equation in GF(2^128) in pure Python) and show that a franked attachment can
still only be reported as the plaintext whose SHA-256 the sender committed to."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from prescreen.franking import AttachmentRef, FrankingError, Recipient, check_attachment
from prescreen.franking.client import ExampleE2EE, Sender, Stamp

R = 0xE1 << 120  # x^128 + x^7 + x^2 + x + 1, in GCM's reflected bit order
MASK = (1 << 128) - 1


def gf_mul(x: int, y: int) -> int:
    """Multiplication in GF(2^128) as GCM defines it (SP 800-38D, algorithm 1)."""
    z, v = 0, x
    for i in range(127, -1, -1):
        if (y >> i) & 1:
            z ^= v
        v = (v >> 1) ^ R if v & 1 else v >> 1
    return z


def gf_pow(x: int, n: int) -> int:
    result = 1 << 127  # the field's one: the polynomial 1 is the top bit in GCM's order
    while n:
        if n & 1:
            result = gf_mul(result, x)
        x = gf_mul(x, x)
        n >>= 1
    return result


def gf_inv(x: int) -> int:
    return gf_pow(x, 2**128 - 2)


def _int(block: bytes) -> int:
    return int.from_bytes(block, "big")


def _block(value: int) -> bytes:
    return value.to_bytes(16, "big")


def _aes(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _keystream(key: bytes, nonce: bytes, blocks: int) -> bytes:
    return b"".join(_aes(key, nonce + (2 + i).to_bytes(4, "big")) for i in range(blocks))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def salamander(
    key1: bytes, key2: bytes, nonce: bytes, wanted: bytes, free_block: int
) -> tuple[bytes, bytes, bytes]:
    """One AES-GCM ciphertext||tag that decrypts under key1 to `wanted` (except one block,
    which absorbs the equation) and under key2 to something else. No associated data.
    Returns (ciphertext_and_tag, plaintext1, plaintext2)."""
    assert len(wanted) % 16 == 0 and len(nonce) == 12
    m = len(wanted) // 16
    ct = bytearray(_xor(wanted, _keystream(key1, nonce, m)))
    h1, h2 = (_int(_aes(k, bytes(16))) for k in (key1, key2))
    j0 = nonce + b"\x00\x00\x00\x01"
    e1, e2 = (_int(_aes(k, j0)) for k in (key1, key2))
    length = _int((0).to_bytes(8, "big") + (8 * len(wanted)).to_bytes(8, "big"))
    # GHASH_H(C) = sum_i C_i H^(m+2-i) + L H  (blocks numbered from 1); the tags agree when
    # GHASH_H1(C) + E1(J0) = GHASH_H2(C) + E2(J0), which is linear in the free block C_j.
    rhs = e1 ^ e2 ^ gf_mul(length, h1 ^ h2)
    for i in range(m):
        if i != free_block:
            exponent = m + 1 - i
            rhs ^= gf_mul(
                _int(ct[16 * i : 16 * i + 16]), gf_pow(h1, exponent) ^ gf_pow(h2, exponent)
            )
    exponent = m + 1 - free_block
    solved = gf_mul(rhs, gf_inv(gf_pow(h1, exponent) ^ gf_pow(h2, exponent)))
    ct[16 * free_block : 16 * free_block + 16] = _block(solved)
    ghash1 = 0
    for i in range(m):
        ghash1 = gf_mul(ghash1 ^ _int(ct[16 * i : 16 * i + 16]), h1)
    ghash1 = gf_mul(ghash1 ^ length, h1)
    tag = _block(ghash1 ^ e1)
    ct = bytes(ct)
    p1 = _xor(ct, _keystream(key1, nonce, m))
    p2 = _xor(ct, _keystream(key2, nonce, m))
    return ct + tag, p1, p2


KEY1, KEY2 = bytes(range(16)), bytes(range(100, 116))
NONCE = bytes(12)
WANTED = b"This is an innocent holiday photo; nothing to see...!".ljust(64, b".")


@pytest.fixture(scope="module")
def attack() -> tuple[bytes, bytes, bytes]:
    return salamander(KEY1, KEY2, NONCE, WANTED, free_block=3)


def test_field_arithmetic() -> None:
    one = 1 << 127
    x = 0x66E94BD4EF8A2C3B884CFA59CA342B2E
    assert gf_mul(x, one) == x
    assert gf_mul(x, gf_inv(x)) == one
    assert gf_mul(x, 0) == 0
    # GCM test case 2 (McGrew & Viega): H = AES_0(0), one zero block -> tag ab6e47d4...
    key, iv = bytes(16), bytes(12)
    sealed = AESGCM(key).encrypt(iv, bytes(16), None)
    h = _int(_aes(key, bytes(16)))
    ct = _int(sealed[:16])
    ghash = gf_mul(gf_mul(ct, h) ^ 128, h)
    assert _block(ghash ^ _int(_aes(key, iv + b"\x00\x00\x00\x01"))) == sealed[16:]
    assert sealed[16:].hex() == "ab6e47d42cec13bdf53a67b21257bddf"


def test_one_ciphertext_decrypts_under_two_keys(attack) -> None:
    sealed, p1, p2 = attack
    assert AESGCM(KEY1).decrypt(NONCE, sealed, None) == p1
    assert AESGCM(KEY2).decrypt(NONCE, sealed, None) == p2
    assert p1 != p2
    assert p1[:48] == WANTED[:48]  # all but the solved block is the attacker's chosen text


def test_the_client_refuses_the_plaintext_not_committed(attack) -> None:
    sealed, p1, _ = attack
    ref = AttachmentRef(hashlib.sha256(p1).digest(), len(p1), "image/jpeg", KEY1)
    assert check_attachment(ref, AESGCM(KEY1).decrypt(NONCE, sealed, None)) == p1
    with pytest.raises(FrankingError, match="committed"):
        check_attachment(ref, AESGCM(KEY2).decrypt(NONCE, sealed, None))


def test_only_the_committed_plaintext_can_be_reported(attack, chat, members) -> None:
    """The sender commits to SHA-256(p1) but hands the recipient key2: whatever the recipient
    saw, a report verifies only with p1, and p2 is refused."""
    sealed, p1, p2 = attack
    members.add("room-s", "mallory", "bob")
    ref = AttachmentRef(hashlib.sha256(p1).digest(), len(p1), "image/jpeg", KEY2, "cdn://x")
    franked = Sender("mallory").compose("room-s", "", [ref])
    e2ee = ExampleE2EE(chat.session_key)
    envelope = e2ee.seal(franked)
    stamped = chat.stamp(envelope.tag, "mallory", "room-s")
    message = Recipient("bob").receive(
        e2ee, envelope, Stamp.from_json(stamped), "mallory", "room-s"
    )
    decrypted = AESGCM(message.body.attachments[0].file_key).decrypt(NONCE, sealed, None)
    assert decrypted == p2
    with pytest.raises(FrankingError):  # a franking-aware client never shows p2
        check_attachment(message.body.attachments[0], decrypted)
    item = message.report_item([p1])
    forged = {**item, "attachments": [base64.b64encode(p2).decode()]}
    refused = chat.report("bob", forged)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "attachment_mismatch"
    accepted = chat.report("bob", item)
    assert accepted.status_code == 201, accepted.text
    screened = accepted.json()["messages"][0]["screening"]
    assert [s["part"] for s in screened] == ["attachment:0"]
