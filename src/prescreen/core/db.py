"""Database engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, Engine, Executable, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator

from prescreen.core.errors import PrescreenError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def driver_chunks(
    session: Session, query: Executable, size: int
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """The rows of `query`, `size` at a time. On SQLite, whose cursor reads as it goes, they
    are the driver's own tuples: building SQLAlchemy's rows costs three times the driver's
    fetch (a million bank signals: 4.2 against 1.2 s), and rebuilding an index reads every
    row. Elsewhere they are streamed from a server-side cursor through SQLAlchemy, which reads
    ahead of the driver's cursor. Only for columns the driver returns as their Python values
    (integers, text): no result processing is applied on SQLite."""
    connection = session.connection()
    if connection.dialect.supports_server_side_cursors:
        yield from connection.execute(query).yield_per(size).partitions()
        return
    result = connection.execute(query)
    try:
        while chunk := result.cursor.fetchmany(size):
            yield chunk
    finally:
        result.close()


READONLY = "prescreen_readonly"
T = TypeVar("T")
log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, pool: PoolOptions | None = None) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout (CLI + server)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    pool = pool or PoolOptions.from_settings()
    # pre_ping tests each pooled connection as it is checked out, so connections that a
    # database restart broke are replaced instead of failing the next request.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_seconds,
        pool_recycle=pool.recycle_seconds,
    )


@dataclass(frozen=True)
class PoolOptions:
    """Connections each process keeps (size) and may add under bursts (max_overflow); with
    N processes the database needs N * (size + max_overflow) connections at most."""

    size: int = 10
    max_overflow: int = 10
    timeout_seconds: float = 10.0
    recycle_seconds: int = 1800

    @classmethod
    def from_settings(cls) -> PoolOptions:
        from prescreen.core.config import get_settings

        cfg = get_settings()
        return cls(
            cfg.db_pool_size, cfg.db_max_overflow, cfg.db_pool_timeout_seconds,
            cfg.db_pool_recycle_seconds,
        )  # fmt: skip


class DatabaseUnavailable(PrescreenError):
    """The database could not be reached or dropped the connection; the work was rolled back
    (unless `committing`, when it may or may not have been stored) and may be retried."""

    status_code = 503
    code = "database_unavailable"

    def __init__(self, message: str, committing: bool = False) -> None:
        super().__init__(message)
        self.committing = committing


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not the driver, begin transactions (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection) -> None:
    """Take SQLite's write lock when a transaction starts. A deferred transaction that reads and
    then writes fails at once ("database is locked") if another connection wrote in between,
    whatever the busy timeout; an immediate one waits its turn. SQLite has one writer anyway.
    Read-only sessions (`Database.session(readonly=True)`) begin deferred and never block."""
    if connection.get_execution_options().get(READONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and its session factory; `session()` commits on success, rolls back on error."""

    def __init__(self, url: str, pool: PoolOptions | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, pool)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.readonly_sessions = sessionmaker(
            self.engine.execution_options(**{READONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A transaction; `readonly` ones must not write (on SQLite they take no write lock)."""
        session = (self.readonly_sessions if readonly else self.sessions)()
        committing = False
        try:
            yield session
            committing = True
            session.commit()
        except OperationalError as exc:
            _rollback_quietly(session)
            if self.engine.dialect.name != "sqlite":
                message = "the database is unavailable; try again shortly"
            elif "locked" in str(exc.orig) or "busy" in str(exc.orig):
                message = "the database is busy (SQLite has one writer); try again shortly"
            else:
                raise
            # The client is told only to retry; the operator needs the driver's reason (a lost
            # connection, a deadlock, a serialization failure). Bound parameters are not in it.
            reason = str(exc.orig)[:500]
            log.warning(
                "database error; transaction rolled back: %s",
                reason,
                extra={"error": reason, "committing": committing},
            )
            raise DatabaseUnavailable(message, committing=committing) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def reads_at_once(self) -> bool:
        """Whether a short read can run on the event loop without stalling it: on SQLite a read
        is a local file read that takes no lock (WAL mode), never a network round trip, and
        a pooled connection is idle, so taking it does not wait for another thread's."""
        pool = self.engine.pool
        idle = isinstance(pool, QueuePool) and pool.checkedin() > 0  # not in-memory databases
        return self.engine.dialect.name == "sqlite" and idle

    def retrying(
        self, work: Callable[[Session], T], attempts: int = 5, idempotent: bool = False
    ) -> T:
        """Run `work` in a transaction, again (after 0.2, 0.4, 0.8 ... s) when the database
        was unreachable. A failure while committing is retried only for `idempotent` work,
        since the first commit may have been stored."""
        for attempt in range(attempts):
            try:
                with self.session() as session:
                    return work(session)
            except DatabaseUnavailable as exc:
                busy_sqlite = self.engine.dialect.name == "sqlite"  # it already waited 30 s
                if attempt == attempts - 1 or busy_sqlite or (exc.committing and not idempotent):
                    raise
                log.warning("database unavailable; retrying", extra={"attempt": attempt + 1})
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


def _rollback_quietly(session: Session) -> None:
    """Roll back after a lost connection (which may itself fail: the connection is gone)."""
    try:
        session.rollback()
    except Exception:
        log.debug("rollback after a lost connection failed", exc_info=True)
