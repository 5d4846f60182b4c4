"""The audit log: appends are gapless, tree heads are signed, proofs check against an RFC 6962
implementation written here independently, and `prescreen audit verify` (offline, no database)
names the first entry that was altered, deleted, moved or inserted in the database."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, text
from typer.testing import CliRunner

from prescreen.audit import service
from prescreen.audit.models import AuditEntry
from prescreen.banks.models import Bank
from prescreen.banks.service import create_bank, delete_bank, update_bank
from prescreen.cli import app
from prescreen.core import cli_context
from prescreen.core.auth import create_api_key, revoke_api_key

# --- an independent RFC 6962 implementation (section 2.1), by the letter of the RFC ----------


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(data: bytes) -> bytes:
    return H(b"\x00" + data)


def node(left: bytes, right: bytes) -> bytes:
    return H(b"\x01" + left + right)


def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def MTH(D: list[bytes]) -> bytes:
    if not D:
        return H(b"")
    if len(D) == 1:
        return D[0]
    k = k_of(len(D))
    return node(MTH(D[:k]), MTH(D[k:]))


def PATH(m: int, D: list[bytes]) -> list[bytes]:
    if len(D) == 1:
        return []
    k = k_of(len(D))
    return [*PATH(m, D[:k]), MTH(D[k:])] if m < k else [*PATH(m - k, D[k:]), MTH(D[:k])]


def SUBPROOF(m: int, D: list[bytes], b: bool) -> list[bytes]:
    if m == len(D):
        return [] if b else [MTH(D)]
    k = k_of(len(D))
    if m <= k:
        return [*SUBPROOF(m, D[:k], b), MTH(D[k:])]
    return [*SUBPROOF(m - k, D[k:], False), MTH(D[:k])]


def root_from_path(i: int, n: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    path = list(path)

    def walk(i: int, n: int) -> bytes:
        if n == 1:
            return leaf_hash
        k, sibling = k_of(n), path.pop()
        return node(walk(i, k), sibling) if i < k else node(sibling, walk(i - k, n - k))

    result = walk(i, n)
    assert not path, "proof too long"
    return result


def roots_from_consistency(m: int, n: int, old_root: bytes, proof: list[bytes]):
    proof = list(proof)

    def walk(m: int, n: int, b: bool) -> tuple[bytes, bytes]:
        if m == n:
            if b:
                return old_root, old_root
            h = proof.pop()
            return h, h
        k = k_of(n)
        if m <= k:
            right = proof.pop()
            old, new = walk(m, k, b)
            return old, node(new, right)
        left = proof.pop()
        old, new = walk(m - k, n - k, False)
        return node(left, old), node(left, new)

    result = walk(m, n, True)
    return result if not proof else (None, None)


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf_of(entry: dict) -> bytes:
    body = {k: entry[k] for k in ("index", "time", "actor", "action", "target", "details")}
    return leaf(canonical({**body, "v": 1}))


def sth_bytes(head: dict) -> bytes:  # RFC 6962 TreeHeadSignature, v1, tree_hash
    return (
        bytes([0, 1])
        + head["timestamp"].to_bytes(8, "big")
        + head["tree_size"].to_bytes(8, "big")
        + bytes.fromhex(head["root_hash"])
    )


# --- the library's Merkle functions against RFC 6962 test data -------------------------------

RFC_LEAVES = [
    b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57", bytes(range(0x60, 0x70)),
]  # fmt: skip
RFC_ROOTS = {  # certificate-transparency's merkle tree test vectors
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def test_merkle_functions_match_rfc6962_and_the_independent_implementation() -> None:
    from prescreen.audit import merkle

    D = [leaf(d) for d in RFC_LEAVES]
    for n, expected in RFC_ROOTS.items():
        assert merkle.root(D[:n]).hex() == expected == MTH(D[:n]).hex()
    hashes = [leaf(i.to_bytes(2, "big")) for i in range(37)]
    for n in range(1, 38):
        root = MTH(hashes[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(hashes, i, n)
            assert proof == PATH(i, hashes[:n])
            assert root_from_path(i, n, hashes[i], proof) == root
            assert merkle.verify_inclusion(i, n, hashes[i], proof, root)
        for m in range(1, n):
            proof = merkle.consistency_proof(hashes, m, n)
            assert proof == SUBPROOF(m, hashes[:n], True)
            assert roots_from_consistency(m, n, MTH(hashes[:m]), proof) == (MTH(hashes[:m]), root)
            assert merkle.verify_consistency(m, n, MTH(hashes[:m]), root, proof)
            assert not merkle.verify_consistency(m, n, MTH(hashes[:m]), H(b"other"), proof)


# --- the log in the database ---------------------------------------------------------------------


def _append(db, count: int, start: int = 0) -> None:
    with db.session() as session:
        for i in range(start, start + count):
            service.record(session, f"apikey:k{i % 3}", "test.action", f"thing:{i}", {"n": i})


def _sign(db, settings) -> dict:
    with db.session() as session:
        return service.head_to_dict(service.sign_tree_head(session, settings, force=True))


def test_an_early_entry_does_not_hold_the_log_while_its_transaction_waits_for_a_row(db) -> None:
    """A request that records an entry and then waits for a row another transaction holds,
    while that one appends its own entry: appended in mid-transaction, each held what the other
    needed, and PostgreSQL failed one of them as a deadlock (a 503 for a moderator's decision,
    say, while a background job worked on the same rows). Entries are appended at commit, so
    both commit."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite locks the whole database for a writer: no row locks to wait in")
    with db.session() as session:
        create_bank(session, "contested", labels=["terrorism"])
    contested = select(Bank).where(Bank.name == "contested").with_for_update()
    locked, recorded = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with db.session() as session:
                session.execute(contested).scalar_one()
                locked.set()
                recorded.wait(10)
                time.sleep(0.5)  # the request below is waiting for the row by now
                service.record(session, "job", "test.holder", "bank:contested")
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    with db.session() as session:
        service.record(session, "moderator", "test.request", "bank:contested")
        recorded.set()
        session.execute(contested).scalar_one()
    thread.join(timeout=30)
    assert not errors, errors
    with db.session(readonly=True) as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.idx)).all()
    assert actions[-2:] == ["test.holder", "test.request"]  # in the order they committed


def test_appends_are_gapless_and_atomic_under_concurrency(db, settings) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(8):
                try:
                    with db.session() as session:
                        service.record(session, f"w{n}", "test.concurrent", str(i), {})
                        if i % 4 == 3:
                            raise RuntimeError("roll back this one")
                except RuntimeError:
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with db.session() as session:
        indexes = session.scalars(select(AuditEntry.idx).order_by(AuditEntry.idx)).all()
        size, frontier = service.state(session)
        leaves = service.leaf_hashes(session, size)
    assert indexes == list(range(24)) and size == 24  # 4 x 6 committed, rolled-back ones gone
    assert MTH(leaves) == service.merkle.frontier_root(frontier)


def test_privileged_actions_elsewhere_are_recorded(db) -> None:
    with db.session() as session:
        row, _key = create_api_key(session, "legal", "alice", actor="apikey:admin1")
        revoke_api_key(session, row.key_id, actor="apikey:admin1")
        create_bank(session, "audited", actor="apikey:lead1", labels=["terrorism"])
        update_bank(session, "audited", actor="apikey:lead1", pdq_threshold=20)
        delete_bank(session, "audited", actor="apikey:lead1")
    with db.session() as session:
        rows = service.list_entries(session)
    assert [(e.actor, e.action) for e in rows] == [
        ("apikey:admin1", "apikey.create"),
        ("apikey:admin1", "apikey.revoke"),
        ("apikey:lead1", "bank.create"),
        ("apikey:lead1", "bank.update"),
        ("apikey:lead1", "bank.delete"),
    ]
    assert json.loads(rows[3].details) == {"changes": {"pdq_threshold": 20}}


def test_signing_key_is_private_and_can_be_configured(db, settings) -> None:
    from prescreen.core.config import Settings

    info = service.public_key_info(settings)
    path = settings.data_dir / "audit_signing_key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert service.public_key_info(settings) == info  # the same key on every use
    raw = bytes(range(32))
    configured = Settings(
        database_url=db.url,
        data_dir=settings.data_dir / "other",
        audit_signing_key=base64.b64encode(raw).decode(),
        _env_file=None,
    )
    other = service.public_key_info(configured)
    assert other["key_id"] != info["key_id"]
    assert not (settings.data_dir / "other" / "audit_signing_key").exists()


def test_api_heads_and_proofs_check_independently(client, auth, db, settings) -> None:
    public = client.get("/v1/audit/public-key", headers=auth("auditor")).json()
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public["public_key"]))
    _append(db, 5)
    first = client.post("/v1/audit/tree-heads", headers=auth("auditor")).json()
    _append(db, 6, start=5)
    second = client.post("/v1/audit/tree-heads", headers=auth("legal")).json()
    for head in (first, second):
        key.verify(base64.b64decode(head["signature"]), sth_bytes(head))  # raises if bad
    entries = client.get(
        "/v1/audit/entries", params={"limit": 1000}, headers=auth("auditor")
    ).json()["entries"]
    D = [leaf_of(e) for e in entries]
    assert MTH(D[: first["tree_size"]]).hex() == first["root_hash"]
    assert MTH(D[: second["tree_size"]]).hex() == second["root_hash"]

    m, n = first["tree_size"], second["tree_size"]
    proof = client.get(
        "/v1/audit/proofs/inclusion",
        params={"index": 3, "tree_size": n},
        headers=auth("auditor"),
    ).json()
    path = [bytes.fromhex(h) for h in proof["audit_path"]]
    assert path == PATH(3, D[:n]) and root_from_path(3, n, D[3], path).hex() == second["root_hash"]

    def consistency() -> list[bytes]:
        body = client.get(
            "/v1/audit/proofs/consistency",
            params={"first": m, "second": n},
            headers=auth("auditor"),
        ).json()
        return [bytes.fromhex(h) for h in body["consistency"]]

    old, new = bytes.fromhex(first["root_hash"]), bytes.fromhex(second["root_hash"])
    assert roots_from_consistency(m, n, old, consistency()) == (old, new)

    # Rewrite history below the first head, leaf hash and all: the proof no longer verifies.
    with db.session() as session:
        entry = session.get(AuditEntry, 2)
        entry.details = json.dumps({"n": 999})
        entry.leaf_hash = leaf_of(service.entry_fields(entry)).hex()
    assert roots_from_consistency(m, n, old, consistency()) != (old, new)
    assert not service.merkle.verify_consistency(m, n, old, new, consistency())
    refused = client.get("/v1/audit/entries", headers=auth("integrator"))
    assert refused.status_code == 403


# --- offline verification of an export -----------------------------------------------------------


def _tamper_alter(connection) -> None:
    connection.execute(
        text("UPDATE audit_entries SET details = :d WHERE idx = 3"), {"d": '{"n":42}'}
    )


def _tamper_rewrite(connection) -> None:  # also recomputes the leaf hash, as a careful forger would
    row = connection.execute(text("SELECT * FROM audit_entries WHERE idx = 3")).mappings().one()
    fields = {
        "index": 3, "time": row["logged_at"], "actor": "apikey:someone-else",
        "action": row["action"], "target": row["target"], "details": json.loads(row["details"]),
    }  # fmt: skip
    connection.execute(
        text("UPDATE audit_entries SET actor = :a, leaf_hash = :h WHERE idx = 3"),
        {"a": fields["actor"], "h": leaf_of(fields).hex()},
    )


def _tamper_delete(connection) -> None:
    connection.execute(text("DELETE FROM audit_entries WHERE idx = 3"))


def _tamper_reorder(connection) -> None:
    cols = "logged_at, actor, action, target, details, leaf_hash, signature"
    rows = {
        r["idx"]: dict(r)
        for r in connection.execute(
            text(f"SELECT idx, {cols} FROM audit_entries WHERE idx IN (3, 6)")
        ).mappings()
    }
    for idx, other in ((3, 6), (6, 3)):
        values = {k: v for k, v in rows[other].items() if k != "idx"}
        sets = ", ".join(f"{k} = :{k}" for k in values)
        connection.execute(
            text(f"UPDATE audit_entries SET {sets} WHERE idx = :idx"), {**values, "idx": idx}
        )


def _tamper_insert(connection) -> None:
    for idx in range(9, 2, -1):
        connection.execute(
            text("UPDATE audit_entries SET idx = :new WHERE idx = :old"),
            {"new": idx + 1, "old": idx},
        )
    fields = {
        "index": 3, "time": "2026-01-01T00:00:00.000000Z", "actor": "apikey:ghost",
        "action": "legal.export", "target": "legal_request:x", "details": {},
    }  # fmt: skip
    connection.execute(
        text(
            "INSERT INTO audit_entries (idx, logged_at, actor, action, target, details, leaf_hash)"
            " VALUES (3, :t, :a, :c, :g, '{}', :h)"
        ),
        {"t": fields["time"], "a": fields["actor"], "c": fields["action"],
         "g": fields["target"], "h": leaf_of(fields).hex()},
    )  # fmt: skip


def _verify(tmp_path, db, settings, monkeypatch) -> tuple[int, str, dict]:
    export = tmp_path / "audit.ndjson"
    with db.session() as session:
        export.write_text("".join(service.export_lines(session, settings)))
    public = service.public_key_info(settings)["public_key"]
    nowhere = tmp_path / "no-database-here" / "prescreen.db"
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", f"sqlite:///{nowhere}")
    monkeypatch.setenv("PRESCREEN_DATA_DIR", str(tmp_path / "no-data-dir"))
    cli_context.reset()
    result = CliRunner().invoke(app, ["audit", "verify", str(export), "--public-key", public])
    cli_context.reset()
    assert not nowhere.parent.exists() and not (tmp_path / "no-data-dir").exists()
    return result.exit_code, result.stderr, json.loads(result.stdout.splitlines()[0])


@pytest.mark.parametrize(
    "tamper,bad",
    [(_tamper_alter, 3), (_tamper_rewrite, 3), (_tamper_delete, 3), (_tamper_reorder, 3),
     (_tamper_insert, 3)],
    ids=["alter", "rewrite", "delete", "reorder", "insert"],
)  # fmt: skip
def test_verify_names_the_first_bad_entry(tamper, bad, db, settings, tmp_path, monkeypatch) -> None:
    _append(db, 10)
    _sign(db, settings)
    code, stderr, report = _verify(tmp_path, db, settings, monkeypatch)
    assert code == 0 and report["ok"] and report["covered_by_tree_heads"] == 10, stderr
    with db.engine.begin() as connection:
        tamper(connection)
    code, stderr, report = _verify(tmp_path, db, settings, monkeypatch)
    assert code == 1 and not report["ok"]
    assert report["first_bad_entry"] == bad
    assert f"first bad entry: {bad}" in stderr and f"entry {bad}" in stderr


def test_verify_catches_a_truncated_log_and_a_forged_head(db, settings, tmp_path, monkeypatch):
    _append(db, 6)
    _sign(db, settings)
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entries WHERE idx >= 4"))
    code, stderr, report = _verify(tmp_path, db, settings, monkeypatch)
    assert code == 1 and report["first_bad_entry"] == 4 and "entry 4 is missing" in stderr
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_tree_heads SET tree_size = 3"))
    code, stderr, report = _verify(tmp_path, db, settings, monkeypatch)
    assert code == 1 and report["problems"][0]["kind"] == "bad_tree_head_signature"


def test_tree_heads_are_signed_by_a_periodic_job(db, settings) -> None:
    from sqlalchemy import func, update

    from prescreen.audit.periodic import arm_all
    from prescreen.jobs.models import Job
    from prescreen.jobs.service import Worker

    _append(db, 3)
    arm_all(db, settings)
    arm_all(db, settings)  # a second process starting: still one job per kind
    with db.session() as session:
        (job,) = session.scalars(select(Job).where(Job.kind == service.SIGN_JOB)).all()
        session.execute(update(Job).where(Job.id == job.id).values(run_after=func.now()))
    worker = Worker(db, kinds=[service.SIGN_JOB], context={"settings": settings})
    assert worker.run_one()
    with db.session() as session:
        assert service.latest_head(session).tree_size == 3
        jobs = session.scalars(select(Job).where(Job.kind == service.SIGN_JOB)).all()
        assert sorted(j.status for j in jobs) == ["done", "queued"]  # the next run is armed


def test_a_periodic_run_reschedules_after_its_interval_was_lengthened(db, settings) -> None:
    """An operator who lengthens an interval (signing every minute, then every day) restarts
    the service with the run armed under the old interval; that run still finishes and arms
    the next within the new interval."""
    from datetime import timedelta

    from sqlalchemy import func, update

    from prescreen.audit.periodic import arm_all
    from prescreen.core.db import utcnow
    from prescreen.jobs.models import Job
    from prescreen.jobs.service import Worker

    _append(db, 2)
    arm_all(db, settings.model_copy(update={"audit_sign_interval_seconds": 60.0}))
    with db.session() as session:
        armed = update(Job).where(Job.kind == service.SIGN_JOB)
        session.execute(armed.values(run_after=func.now()))  # due now
    daily = settings.model_copy(update={"audit_sign_interval_seconds": 86_400.0})
    worker = Worker(db, kinds=[service.SIGN_JOB], context={"settings": daily})
    assert worker.run_one()
    with db.session() as session:
        jobs = session.scalars(select(Job).where(Job.kind == service.SIGN_JOB)).all()
        assert sorted(j.status for j in jobs) == ["done", "queued"], [j.error for j in jobs]
        (queued,) = [j for j in jobs if j.status == "queued"]
        run_after = queued.run_after.replace(tzinfo=utcnow().tzinfo)
        assert utcnow() < run_after <= utcnow() + timedelta(days=1)
