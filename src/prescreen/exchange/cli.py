"""`prescreen exchange ...`: identity keys, peers, pulls, opinions, imports and exports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from prescreen.banks import service as banks
from prescreen.core.cli_context import CLI_ACTOR, database, emit, fail, settings
from prescreen.core.errors import PrescreenError
from prescreen.exchange import adapters, feed, keys, service
from prescreen.exchange.models import OpinionKind, OpinionPolicy, Trust
from prescreen.exchange.pull import pull_and_record

app = typer.Typer(help="Share banks with other instances; import and export shared lists.")
peer_app = typer.Typer(help="Peers this instance follows.")
app.add_typer(peer_app, name="peer")


def _follows(specs: list[str]) -> list[dict[str, str]]:
    """`remote` or `remote=local`."""
    pairs = [spec.split("=", 1) for spec in specs]
    return [{"remote": p[0], "local": p[-1]} for p in pairs]


def _label_map(specs: list[str]) -> dict[str, str]:
    return dict(spec.split("=", 1) for spec in specs if "=" in spec)


@app.command("identity")
def identity() -> None:
    """This instance's id and public keys (give them to peers)."""
    with database().session() as session:
        emit(service.identity(session, settings()))


@app.command("rotate-key")
def rotate_key() -> None:
    """Make a new signing key, endorsed by the current one."""
    with database().session() as session:
        keys.rotate(session, settings(), CLI_ACTOR)
        emit(service.identity(session, settings()))


@app.command("feed")
def show_feed(
    bank: str,
    after: Annotated[int, typer.Option(help="Items after this sequence number")] = 0,
    limit: Annotated[int, typer.Option()] = 100,
) -> None:
    """Print a page of a shared bank's signed feed."""
    try:
        with database().session() as session:
            emit(feed.feed_page(session, settings(), bank, after, limit))
    except PrescreenError as exc:
        fail(exc)


@peer_app.command("add")
def peer_add(
    name: str,
    base_url: Annotated[str, typer.Option(help="e.g. https://prescreen.peer.example")],
    public_key: Annotated[list[str], typer.Option(help="Peer's public key (repeatable)")],
    follow: Annotated[list[str], typer.Option(help="REMOTE or REMOTE=LOCAL bank")] = [],  # noqa: B006
    api_key: Annotated[str, typer.Option(envvar="PRESCREEN_PEER_API_KEY")] = "",
    trust: Annotated[Trust, typer.Option()] = Trust.review,
    label: Annotated[list[str], typer.Option(help="PEER_LABEL=LOCAL_LABEL")] = [],  # noqa: B006
    opinion_policy: Annotated[OpinionPolicy, typer.Option()] = OpinionPolicy.disable,
) -> None:
    """Follow a peer's shared banks."""
    try:
        with database().session() as session:
            peer = service.create_peer(
                session,
                name,
                public_key,
                CLI_ACTOR,
                base_url=base_url,
                api_key=api_key,
                follows=_follows(follow),
                trust=trust.value,
                label_map=_label_map(label),
                opinion_policy=opinion_policy.value,
            )
            emit(service.peer_to_dict(session, peer))
    except PrescreenError as exc:
        fail(exc)


@peer_app.command("list")
def peer_list() -> None:
    with database().session() as session:
        for peer in service.list_peers(session):
            emit(service.peer_to_dict(session, peer))


@peer_app.command("set")
def peer_set(
    name: str,
    trust: Annotated[Trust | None, typer.Option()] = None,
    public_key: Annotated[list[str], typer.Option(help="Replace the peer's keys")] = [],  # noqa: B006
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    opinion_policy: Annotated[OpinionPolicy | None, typer.Option()] = None,
) -> None:
    """Change a peer's trust, keys, state or opinion policy."""
    try:
        with database().session() as session:
            peer = service.update_peer(
                session,
                name,
                CLI_ACTOR,
                public_keys=public_key or None,
                trust=trust.value if trust else None,
                enabled=enabled,
                opinion_policy=opinion_policy.value if opinion_policy else None,
            )
            emit(service.peer_to_dict(session, peer))
    except PrescreenError as exc:
        fail(exc)


@peer_app.command("remove")
def peer_remove(name: str) -> None:
    try:
        with database().session() as session:
            service.delete_peer(session, name, CLI_ACTOR)
        emit({"removed": name})
    except PrescreenError as exc:
        fail(exc)


@peer_app.command("rejections")
def peer_rejections(name: str) -> None:
    """Feed pages from this peer that were refused, newest first."""
    try:
        with database().session() as session:
            for row in service.rejections(session, service.get_peer(session, name)):
                emit(row)
    except PrescreenError as exc:
        fail(exc)


@app.command("pull")
def pull(name: str) -> None:
    """Pull a peer now."""
    try:
        with database().session(readonly=True) as session:
            service.get_peer(session, name)
    except PrescreenError as exc:
        fail(exc)
    result = pull_and_record(database(), settings(), name)
    emit(result)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("opinion")
def opinion(bank: str, entry: int, kind: OpinionKind, note: str = "") -> None:
    """Record (and publish, if the bank is shared) an opinion on an entry."""
    try:
        with database().session() as session:
            emit(
                service.give_opinion(session, settings(), bank, entry, kind.value, CLI_ACTOR, note)
            )
    except PrescreenError as exc:
        fail(exc)


@app.command("release")
def release(bank: str, entry: int) -> None:
    """Let a quarantined entry act again."""
    try:
        with database().session() as session:
            emit(service.release(session, bank, entry, CLI_ACTOR))
    except PrescreenError as exc:
        fail(exc)


@app.command("import")
def import_list(
    bank: str,
    file: Path,
    format: Annotated[str, typer.Option(help=", ".join(adapters.FORMATS))],
    skip_invalid: Annotated[bool, typer.Option()] = False,
) -> None:
    """Import a list (HMA CSV/JSON, ThreatExchange JSON/signal file, NDJSON) into a bank."""
    try:
        text = file.read_text(encoding="utf-8")
        with database().session() as session:
            target = banks.get_bank(session, bank)
            emit(adapters.import_text(session, target, text, format, CLI_ACTOR, skip_invalid))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    except PrescreenError as exc:
        fail(exc)


@app.command("export")
def export_list(
    bank: str,
    format: Annotated[str, typer.Option(help=", ".join(adapters.EXPORT_FORMATS))] = "ndjson",
) -> None:
    """Write a bank to stdout as NDJSON, HMA CSV or a ThreatExchange signal file."""
    try:
        with database().session(readonly=True) as session:
            for line in adapters.export_lines(session, banks.get_bank(session, bank), format):
                sys.stdout.write(line)
    except PrescreenError as exc:
        fail(exc)
